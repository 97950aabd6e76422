"""Request and response plumbing shared by the lab's HTTP handlers (server.py, ingest.py).

The contract's error body, JSON (de)serialisation, the role marker, the app keys and the
request helpers that validate bodies and partition ids. No routes live here.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict

from aiohttp import web

from ceptra_lab.auth import CAPABILITIES, Authenticator
from ceptra_lab.cluster import Cluster

import json

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the venv
    orjson = None

# A request document may nest at most this deep. orjson reads up to 1024 levels but writes
# at most 254, so a deeper document the lab stored (config annotations, audit details, an
# event payload) would make every later read of it fail; 64 leaves room for the envelopes
# the lab wraps around stored documents.
MAX_JSON_DEPTH = 64
_parse = orjson.loads if orjson is not None else json.loads


def dumps(value) -> bytes:
    """Serialize a response document (orjson; the stdlib encoder for what orjson refuses,
    e.g. integers beyond 64 bits, so an odd value never turns an answer into a 500)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":")).encode()


def loads(data: bytes | str):
    """Parse a request document; ValueError when it is not JSON or nests deeper than MAX_JSON_DEPTH.

    The depth is only walked when the text holds more brackets than the limit (bytes.count
    is cheap), so the ingest hot path pays two counts per line.
    """
    document = _parse(data)
    if type(data) is bytes:
        brackets = data.count(b"{") + data.count(b"[")
    else:
        brackets = str(data).count("{") + str(data).count("[")
    if brackets > MAX_JSON_DEPTH and json_depth(document) > MAX_JSON_DEPTH:
        raise ValueError(f"document nests deeper than {MAX_JSON_DEPTH} levels of objects and lists")
    return document


def json_depth(document) -> int:
    """Nesting depth of a parsed JSON document (a scalar is 0, [] or {} is 1); iterative."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


LOG = logging.getLogger("ceptra_lab")
MAX_JSON_BODY = 16 * 1024 * 1024
CLUSTER = web.AppKey("cluster", Cluster)
AUTH = web.AppKey("auth", Authenticator)
DIALECT = web.AppKey("dialect", str)
IDEMPOTENCY = web.AppKey("idempotency", OrderedDict)


class ApiError(Exception):
    """An error that leaves as the contract's error body."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def json_response(document, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON response with the given status."""
    return web.Response(body=dumps(document), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, **details) -> web.Response:
    """The contract's error body."""
    return json_response({"error": message, "status": status, **details}, status=status)


def requires(capability: str | None):
    """Mark a handler with the capability it needs (auth.CAPABILITIES; None: no identity needed).

    Roles are capability sets (auth.ROLE_CAPABILITIES): name what the call does, not a role.
    """
    if capability is not None and capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; use one of {', '.join(CAPABILITIES)} or None")

    def mark(handler):
        handler.required_capability = capability
        return handler
    return mark

def check_json_content_type(request: web.Request, allowed: set[str] | None = None) -> str:
    """Return the media type; 415 for a charset/parameter suffix or a non-JSON type."""
    header = request.headers.get("Content-Type")
    if header is None:
        return "application/json"
    media, _, params = header.partition(";")
    media = media.strip().lower()
    if params.strip():
        raise ApiError(415, f"Content-Type {header!r} carries a parameter; send exactly 'application/json'")
    if media != "application/json" and media not in (allowed or set()):
        raise ApiError(415, f"Content-Type {media!r} is not accepted here; send 'application/json'")
    return media


async def read_body(request: web.Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The request body; 413 when larger than `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body of {request.content_length} bytes exceeds the {limit}-byte limit")
    # request.read() reads the whole body (at most the app's client_max_size) and keeps it, so
    # the idempotency middleware and the handler see the same bytes
    body = await request.read()
    if len(body) > limit:
        raise ApiError(413, f"request body exceeds the {limit}-byte limit")
    return body


async def read_json_object(request: web.Request, allow_empty: bool = False) -> dict:
    """Parse a JSON object body (400 on bad JSON or a non-object, 415 on a wrong type)."""
    check_json_content_type(request)
    body = await read_body(request)
    if not body.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "request body is empty; send a JSON object")
    return parse_json_object(body, "request body must be a JSON object")


def parse_json_object(body: bytes, what: str) -> dict:
    """Decode a JSON object (400 on bad JSON; 400 saying `what` when it is not an object)."""
    try:
        document = loads(body)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(400, f"{what}, got {type(document).__name__}")
    return document


def found(mapping: dict, key: str, what: str):
    """The document stored under `key`, or a 404 naming what was looked for."""
    document = mapping.get(key)
    if document is None:
        raise ApiError(404, f"unknown {what} {key!r}")
    return document


def query_index(request: web.Request, name: str, default: str | None, what: str) -> int:
    """A non-negative integer query parameter in ASCII digits (400 otherwise).

    ``str.isdigit()`` also accepts '²' and '٣', which ``int()`` refuses or misreads, so the
    parameter must match ``[0-9]{1,18}``. ``default`` is used when it is absent (None: required).
    """
    raw = request.query.get(name, default)
    if raw is None:
        raise ApiError(400, f"query parameter {name!r} is required: {what}, e.g. ?{name}=3")
    if not re.fullmatch(r"[0-9]{1,18}", raw.strip()):
        raise ApiError(400, f"query parameter {name!r} must be {what} in ASCII digits, e.g. ?{name}=3; got {raw!r}")
    return int(raw.strip())


def only_keys(document: dict, allowed: tuple[str, ...]) -> None:
    """422 when the body carries keys the route does not know."""
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}",
                       violations=[{"path": key, "message": "unknown field"} for key in unknown])


def known_partition(cluster: Cluster, part_id, field: str = "part_id") -> str:
    """Return part_id as a string or raise 404/422."""
    if not isinstance(part_id, str):   # the contract's ids are strings ("0"); a number is refused
        raise ApiError(422, f"{field} must be a string like \"0\"", violations=[{"path": field, "message": "must be a string"}])
    if str(part_id) not in cluster.partitions:
        raise ApiError(404, f"unknown partition {part_id!r}; this cluster has partitions 0..{len(cluster.part_ids) - 1}")
    return str(part_id)


def partition_list(cluster: Cluster, value, field: str) -> list[str]:
    """A list of known partition ids (422/404 otherwise)."""
    if not isinstance(value, list):
        raise ApiError(422, f"{field} must be a list of partition ids", violations=[{"path": field, "message": "must be a list"}])
    return [known_partition(cluster, item, field) for item in value]


def actor(request: web.Request) -> str:
    """The caller identity recorded in audit records."""
    return request["identity"].actor
