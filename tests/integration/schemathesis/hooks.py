"""Schemathesis hooks for the CEPtra contract (loaded by tests/integration/test_openapi_schemathesis.py).

- NDJSON: the append stream's request and response media type (`application/x-ndjson`),
  one JSON value per line; schemathesis has no built-in (de)serializer for it.
- The one fault knob whose purpose is to make the lab answer 503 (`http_503_ratio`) is
  dropped from generated fault bodies, so "no 5xx" keeps meaning "no lab bug"; the knob
  itself is tested in lab/tests/test_server_semantics.py.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson_serializer(ctx, value):
    """A list is one line per item; anything else is one line."""
    items = value if isinstance(value, list) else [value]
    lines = []
    for item in items:
        try:
            lines.append(json.dumps(item).encode())
        except (TypeError, ValueError):
            lines.append(str(item).encode())
    return {"data": b"\n".join(lines) + b"\n"}


@schemathesis.deserializer("application/x-ndjson")
def ndjson_deserializer(ctx, response):
    """One JSON value per non-empty line, as a list."""
    return [json.loads(line) for line in response.content.splitlines() if line.strip()]


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Every phase sends through Case.call: drop http_503_ratio from POST /v1/test/faults bodies."""
    if case.operation.path == "/v1/test/faults" and case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body.pop("http_503_ratio", None)
