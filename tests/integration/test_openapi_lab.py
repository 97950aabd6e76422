"""docs/ceptra-api.openapi.yaml against the contract text and against the lab's answers.

- the document is valid OpenAPI 3.1 and names every endpoint of ../shared/ceptra-api.md;
- every route the lab serves is documented, and the lab serves every documented operation;
- a table of real requests (successes and each documented error: 400, 401, 403, 404, 409,
  412, 413, 415, 422, 503) gets answers whose status and content type the operation
  documents and whose body matches the documented schema (schemathesis' response
  validation, the same code its run in test_openapi_schemathesis.py uses).
"""

import json
import os
import re
import time

import pytest
import requests
import schemathesis
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCUMENT = os.path.join(REPO, "docs", "ceptra-api.openapi.yaml")
CONTRACT = os.path.join(os.environ["CEPTRA_SHARED"], "ceptra-api.md")
GAMING = os.path.join(os.environ["CEPTRA_SHARED"], "reference", "bundles", "gaming_cheat_detection.yaml")
METHODS = ("get", "post", "patch", "put", "delete")


@pytest.fixture(scope="module")
def document():
    with open(DOCUMENT, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def schema():
    loaded = schemathesis.openapi.from_path(DOCUMENT)
    loaded.validate()          # against the OpenAPI 3.1 meta-schema
    return loaded


def documented_operations(document):
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_document_is_openapi_3_1(document, schema):
    assert document["openapi"].startswith("3.1.")
    assert len(list(schema.get_all_operations())) == len(documented_operations(document))


def contract_endpoints():
    """Every `METHOD /path` the contract text names (placeholders as {name}, queries dropped)."""
    text = open(CONTRACT, encoding="utf-8").read()
    found = set()
    for methods, path in re.findall(r"\b((?:GET|POST|PATCH|PUT|DELETE)(?:\|(?:GET|POST|PATCH|PUT|DELETE))*"
                                    r"(?:/(?:GET|POST|PATCH|PUT|DELETE))*) (/[A-Za-z0-9_./<>{}-]*)", text):
        path = re.sub(r"<([a-z_]+)>", r"{\1}", path.rstrip("."))
        for method in re.split(r"[/|]", methods):
            found.add((method, path))
    return found


def test_document_covers_every_contract_endpoint(document):
    endpoints = contract_endpoints()
    assert len(endpoints) >= 20, endpoints          # the parser found the contract's endpoints
    assert endpoints - documented_operations(document) == set()


def lab_routes():
    from ceptra_lab.auth import Authenticator
    from ceptra_lab.cluster import Cluster
    from ceptra_lab.server import make_app

    app = make_app(Cluster(2, test_mode=True), Authenticator({}))
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}


def test_every_lab_route_is_documented_and_every_operation_served(document):
    routes, documented = lab_routes(), documented_operations(document)
    assert routes - documented == set(), "the lab serves routes the document does not name"
    assert documented - routes == set(), "documented operations the lab does not serve"


# ---- the lab's answers ------------------------------------------------------------------------
def call(lab, method, path, role="admin", body=None, data=None, headers=None):
    sent = dict(headers or {})
    if role is not None:
        sent["Authorization"] = "Bearer " + lab.tokens[role]
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    return requests.request(method, lab.url + path, data=data, headers=sent, timeout=30)


def assert_conforms(schema, document, template, response):
    """Status and content type documented for the operation, body valid against its schema."""
    method = response.request.method
    responses = document["paths"][template][method.lower()]["responses"]
    entry = responses.get(str(response.status_code))
    assert entry is not None, \
        f"{method} {template} answered {response.status_code}, which it does not document: {response.text[:300]}"
    if "$ref" in entry:
        entry = document["components"]["responses"][entry["$ref"].rsplit("/", 1)[-1]]
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in entry.get("content", {}), f"{method} {template} {response.status_code}: {media} not documented"
    schema[template][method].validate_response(response)


@pytest.fixture(scope="module")
def prepared(lab):
    """Objects the table refers to: a bundle, its barrier, a replay job, a few config versions."""
    with open(GAMING, "rb") as handle:
        bundle = handle.read()
    upload = call(lab, "POST", "/v1/definitions", data=bundle, headers={"Content-Type": "application/yaml"}).json()
    time.sleep(0.5)
    barrier = call(lab, "POST", "/v1/activate", body={"bundle_id": upload["bundle_id"]}).json()
    job = call(lab, "POST", "/v1/replay", body={"part_ids": ["0"], "reason": "openapi"}).json()
    call(lab, "PATCH", "/v1/config", body={"annotations": {"openapi": "prepared"}})
    return {"bundle": bundle, "bundle_id": upload["bundle_id"], "barrier_id": barrier["barrier_id"],
            "job_id": job["job_id"]}


EVENT = {"event_id": "oa-1", "part_id": "0", "partition_key": "k", "ts_ns": None, "schema_key": "metric_sample_v1",
         "payload": {"metric": "lab_events_total", "labels": {}, "value": 1.0}}
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
# (template, method, path, role, kwargs, expected status); {bundle_id} etc. come from `prepared`
CASES = [
    ("/healthz", "GET", "/healthz", None, {}, 200),
    ("/readyz", "GET", "/readyz", "observer", {}, 200),
    ("/readyz", "GET", "/readyz", None, {}, 401),
    ("/readyz", "GET", "/readyz", "ingest", {}, 403),
    ("/metrics", "GET", "/metrics", "observer", {}, 200),
    ("/v1/config", "GET", "/v1/config", "observer", {}, 200),
    ("/v1/config", "PATCH", "/v1/config", "operator", {"body": {"annotations": {"openapi": 1}}}, 200),
    ("/v1/config", "PATCH", "/v1/config", "operator", {"body": {"pane_size_ms": 0}}, 422),
    ("/v1/config", "PATCH", "/v1/config", "operator", {"body": {"pane_size_ms": 1}, "headers": {"If-Match": '"0"'}}, 412),
    ("/v1/config", "PATCH", "/v1/config", "operator", {"data": b"{nope", "headers": JSON}, 400),
    ("/v1/config", "PATCH", "/v1/config", "operator",
     {"data": b"{}", "headers": {"Content-Type": "application/json; charset=utf-8"}}, 415),
    ("/v1/config", "PATCH", "/v1/config", "operator",
     {"data": "{big}", "headers": JSON}, 413),
    ("/v1/config", "PATCH", "/v1/config", "observer", {"body": {"pane_size_ms": 300}}, 403),
    ("/v1/config", "PATCH", "/v1/config", "operator", {"body": {"pane_size_ms": 300}, "headers": {"Idempotency-Key": "a b"}}, 400),
    ("/v1/config/rollback", "POST", "/v1/config/rollback?to=1", "operator", {}, 200),
    ("/v1/config/rollback", "POST", "/v1/config/rollback?to=999999", "operator", {}, 404),
    ("/v1/config/rollback", "POST", "/v1/config/rollback?to=%C2%B2", "operator", {}, 400),
    ("/v1/definitions/validate", "POST", "/v1/definitions/validate", "observer",
     {"data": "{bundle}", "headers": {"Content-Type": "application/yaml"}}, 200),
    ("/v1/definitions/validate", "POST", "/v1/definitions/validate", "observer",
     {"data": b"bundle: [unclosed", "headers": {"Content-Type": "application/yaml"}}, 422),
    ("/v1/definitions/validate", "POST", "/v1/definitions/validate", "observer",
     {"data": b"a,b", "headers": {"Content-Type": "text/csv"}}, 415),
    ("/v1/definitions", "POST", "/v1/definitions", "operator",
     {"data": "{bundle}", "headers": {"Content-Type": "application/yaml"}}, 200),
    ("/v1/definitions", "POST", "/v1/definitions", "operator", {"data": b"", "headers": JSON}, 400),
    ("/v1/definitions", "GET", "/v1/definitions", "observer", {}, 200),
    ("/v1/activate", "POST", "/v1/activate", "operator", {"body": {"bundle_id": "{bundle_id}"}}, 200),
    ("/v1/activate", "POST", "/v1/activate", "operator", {"body": {"bundle_id": "nope@0"}}, 404),
    ("/v1/activate", "POST", "/v1/activate", "operator", {"body": {"bundle_id": 5}}, 422),
    ("/v1/activate/{barrier_id}", "GET", "/v1/activate/{barrier_id}", "observer", {}, 200),
    ("/v1/activate/{barrier_id}", "GET", "/v1/activate/barrier-0", "observer", {}, 404),
    ("/v1/replay", "POST", "/v1/replay", "operator", {"body": {"part_ids": ["1"]}}, 200),
    ("/v1/replay", "POST", "/v1/replay", "operator", {"body": {"part_ids": ["77"]}}, 404),
    ("/v1/replay", "POST", "/v1/replay", "operator", {"body": {"part_ids": "0"}}, 422),
    ("/v1/replay/{job_id}", "GET", "/v1/replay/{job_id}", "observer", {}, 200),
    ("/v1/replay/{job_id}", "GET", "/v1/replay/replay-0", "observer", {}, 404),
    ("/v1/state", "GET", "/v1/state", "observer", {}, 200),
    ("/v1/audit", "GET", "/v1/audit?kind=config_change", "observer", {}, 200),
    ("/v1/audit", "GET", "/v1/audit?since=last-tuesday", "observer", {}, 400),
    ("/v1/audit", "POST", "/v1/audit", "operator", {"body": {"kind": "openapi", "details": {"a": 1}}}, 201),
    ("/v1/audit", "POST", "/v1/audit", "operator", {"body": {"kind": ""}}, 422),
    ("/v1/audit", "POST", "/v1/audit", "observer", {"body": {"kind": "x"}}, 403),
    ("/append", "POST", "/append", "ingest", {"body": "{event}"}, 200),
    ("/append", "POST", "/append", "ingest", {"body": {"event_id": "oa-bad", "part_id": "0"}}, 200),
    ("/append", "POST", "/append", "ingest", {"data": b"[1]", "headers": JSON}, 400),
    ("/append", "POST", "/append", "ingest", {"body": {"event_id": "x", "part_id": "77"}}, 404),
    ("/append", "POST", "/append", "observer", {"body": "{event}"}, 403),
    ("/v1/partitions/{part_id}/append-stream", "POST", "/v1/partitions/1/append-stream", "ingest",
     {"data": "{event_lines}", "headers": NDJSON}, 200),
    ("/v1/partitions/{part_id}/append-stream", "POST", "/v1/partitions/9/append-stream", "ingest",
     {"data": b"{}\n", "headers": NDJSON}, 404),
    ("/v1/partitions/{part_id}/append-stream", "POST", "/v1/partitions/1/append-stream", "ingest",
     {"data": b"{}\n", "headers": {"Content-Type": "text/csv"}}, 415),
    ("/v1/test/metrics-snapshot", "GET", "/v1/test/metrics-snapshot?part_id=0", "observer", {}, 200),
    ("/v1/test/metrics-snapshot", "GET", "/v1/test/metrics-snapshot", "observer", {}, 400),
    ("/v1/test/metrics-snapshot", "GET", "/v1/test/metrics-snapshot?part_id=12", "observer", {}, 404),
    ("/v1/test/derived-events", "GET", "/v1/test/derived-events?part_id=0", "observer", {}, 200),
    ("/v1/test/derived-events", "GET", "/v1/test/derived-events?part_id=0&since=%C2%B2", "observer", {}, 400),
    ("/v1/test/derived-events", "GET", "/v1/test/derived-events?part_id=9", "observer", {}, 404),
    ("/v1/test/sink", "GET", "/v1/test/sink", "observer", {}, 200),
    ("/v1/test/sink", "POST", "/v1/test/sink", "admin", {"body": {"external_decision_ids": ["oa-dec-1"]}}, 200),
    ("/v1/test/sink", "POST", "/v1/test/sink", "admin", {"body": {"external_decision_ids": "oa"}}, 422),
    ("/v1/test/sink", "POST", "/v1/test/sink", "operator", {"body": {"reset": True}}, 403),
    ("/v1/test/faults", "GET", "/v1/test/faults", "admin", {}, 200),
    ("/v1/test/faults", "POST", "/v1/test/faults", "admin", {"body": {"part_id": "1", "replication_lag_ms": 3}}, 200),
    ("/v1/test/faults", "POST", "/v1/test/faults", "admin", {"body": {"apply_capacity": -1}}, 422),
    ("/v1/test/faults", "POST", "/v1/test/faults", "operator", {"body": {"replication_lag_ms": 0}}, 403),
    ("/v1/test/outage", "POST", "/v1/test/outage", "admin", {"body": {"part_ids": ["3"], "duration_ms": 50}}, 200),
    ("/v1/test/outage", "POST", "/v1/test/outage", "admin", {"body": {"duration_ms": 10 ** 15}}, 422),
    ("/v1/test/compact", "POST", "/v1/test/compact", "admin", {}, 200),
    ("/v1/test/checkpoint", "POST", "/v1/test/checkpoint", "admin", {"body": {"part_id": "0"}}, 200),
    ("/v1/test/checkpoint", "POST", "/v1/test/checkpoint", "admin", {"body": {"part_id": 0}}, 422),
    ("/v1/test/wipe", "POST", "/v1/test/wipe", "admin", {"body": {"part_id": "2"}}, 200),
    ("/v1/test/wipe", "POST", "/v1/test/wipe", "admin", {"body": {"part_id": "77"}}, 404),
    ("/v1/test/wipe", "POST", "/v1/test/wipe", "admin", {"body": {}}, 422),
]


def fill(value, prepared):
    """Put the prepared ids, bundle text and a fresh event into a case's path or body."""
    event = dict(EVENT, ts_ns=time.time_ns())
    if value == "{bundle}":
        return prepared["bundle"]
    if value == "{big}":
        return b'{"annotations": {"x": "' + b"y" * (17 * 1024 * 1024) + b'"}}'
    if value == "{event}":
        return event
    if value == "{event_lines}":
        return b"".join(json.dumps(dict(event, event_id="oa-s%d" % n, part_id="1")).encode() + b"\n" for n in range(3))
    if isinstance(value, str):
        return value.format(**prepared)
    if isinstance(value, dict):
        return {key: fill(item, prepared) for key, item in value.items()}
    return value


@pytest.mark.parametrize("template,method,path,role,kwargs,expected", CASES,
                         ids=["%s %s %d" % (case[1], case[2], case[5]) for case in CASES])
def test_lab_answer_conforms(lab, schema, document, prepared, template, method, path, role, kwargs, expected):
    kwargs = {key: fill(value, prepared) for key, value in kwargs.items()}
    response = call(lab, method, fill(path, prepared), role=role, **kwargs)
    assert response.status_code == expected, response.text[:500]
    assert_conforms(schema, document, template, response)


def test_injected_503_and_not_ready_readiness_conform(lab_factory, schema, document):
    lab = lab_factory(partitions=2, test_mode=True)
    assert call(lab, "POST", "/v1/test/outage", body={"part_ids": ["0", "1"], "duration_ms": 60000}).status_code == 200
    response = call(lab, "GET", "/readyz", role="observer")
    assert response.status_code == 503 and response.json()["ready"] is False
    assert_conforms(schema, document, "/readyz", response)
    assert call(lab, "POST", "/v1/test/faults", body={"http_503_ratio": 1.0}).status_code == 200
    for template in ("/v1/state", "/v1/config", "/metrics", "/readyz"):
        response = call(lab, "GET", template, role="observer")
        assert response.status_code == 503 and response.headers["Retry-After"] == "0"
        assert_conforms(schema, document, template, response)


def test_reference_dialect_readiness_conforms(lab_factory, schema, document):
    lab = lab_factory(partitions=2, extra_args=["--dialect", "reference"])
    response = call(lab, "GET", "/readyz", role="observer")
    assert response.status_code == 200 and isinstance(response.json()["partitions"], list)
    assert_conforms(schema, document, "/readyz", response)


def test_a_broken_answer_is_caught(lab, schema, document):
    """The checker is not vacuous: a state document missing a required field fails it."""
    response = call(lab, "GET", "/v1/state", role="observer")
    broken = response.json()
    del broken["partitions"][0]["commit_index"]
    response._content = json.dumps(broken).encode()
    with pytest.raises(Exception) as info:
        assert_conforms(schema, document, "/v1/state", response)
    assert "commit_index" in str(info.value)
