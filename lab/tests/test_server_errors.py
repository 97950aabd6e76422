"""Malformed requests get the contract's error bodies (never a 500 or a traceback) and change nothing."""
from __future__ import annotations

import json

import pytest

from ceptra_lab.testing import append_stream, sample_event


def fingerprint(lab):
    """Everything a bad request must leave alone."""
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    _, _, config = lab.request("GET", "/v1/config", role="observer")
    _, _, audit = lab.request("GET", "/v1/audit", role="observer")
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    commits = [(p["commit_index"], p["applied_index"], p["dedup"]["occupancy"]) for p in state["partitions"]]
    return commits, config, len(audit["records"]), definitions["bundles"]


BAD_REQUESTS = [
    ("PATCH", "/v1/config", b"{not json", {"Content-Type": "application/json"}, 400),
    ("PATCH", "/v1/config", b"[1, 2]", {"Content-Type": "application/json"}, 422),
    ("PATCH", "/v1/config", b'{"pane_size_ms": 500}', {"Content-Type": "application/json; charset=utf-8"}, 415),
    ("PATCH", "/v1/config", b'{"pane_size_ms": 500}', {"Content-Type": "text/plain"}, 415),
    ("PATCH", "/v1/config", b'{"pane_size_ms": -1}', {"Content-Type": "application/json"}, 422),
    ("PATCH", "/v1/config", b'{"partition_flow": 7}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/config/rollback?to=abc", None, {}, 400),
    ("POST", "/v1/config/rollback?to=999", None, {}, 404),
    ("POST", "/v1/config/rollback", None, {}, 400),
    ("POST", "/v1/definitions", b"bundle: [unclosed", {"Content-Type": "application/yaml"}, 422),
    ("POST", "/v1/definitions", b"", {"Content-Type": "application/yaml"}, 400),
    ("POST", "/v1/definitions", b"\xff\xfe\x00", {"Content-Type": "application/yaml"}, 400),
    ("POST", "/v1/definitions/validate", b'"just a string"', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/activate", b'{"bundle_id": 5}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/activate", b'{"bundle_id": "nope@000"}', {"Content-Type": "application/json"}, 404),
    ("POST", "/v1/activate", b'{"bundle_id": "x", "readiness_threshold": "high"}', {"Content-Type": "application/json"}, 404),
    ("GET", "/v1/activate/barrier-404", None, {}, 404),
    ("POST", "/v1/replay", b'{"part_ids": ["42"]}', {"Content-Type": "application/json"}, 404),
    ("POST", "/v1/replay", b'{"part_ids": "0"}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/replay", b'{"part_ids": ["0"], "from": "yesterday"}', {"Content-Type": "application/json"}, 422),
    ("GET", "/v1/replay/job-404", None, {}, 404),
    ("GET", "/v1/audit?since=last-tuesday", None, {}, 400),
    ("POST", "/v1/audit", b'{"kind": 3}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/audit", b'{"kind": "x", "details": []}', {"Content-Type": "application/json"}, 422),
    ("POST", "/append", b"{", {"Content-Type": "application/json"}, 400),
    ("POST", "/append", b'{"event_id": "x", "part_id": "17"}', {"Content-Type": "application/json"}, 404),
    ("POST", "/append", b'[{"event_id": "x"}]', {"Content-Type": "application/json"}, 400),
    ("POST", "/v1/partitions/9/append-stream", b"{}\n", {"Content-Type": "application/x-ndjson"}, 404),
    ("POST", "/v1/partitions/0/append-stream", b"{}\n", {"Content-Type": "text/csv"}, 415),
    ("GET", "/v1/test/metrics-snapshot?part_id=12", None, {}, 404),
    ("GET", "/v1/test/metrics-snapshot", None, {}, 400),
    ("POST", "/v1/test/faults", b'{"apply_capacity": -5}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/test/faults", b'{"shadow_state": "BROKEN"}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/test/faults", b'{"what": 1}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/test/outage", b'{"duration_ms": "long"}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/test/wipe", b'{}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/test/wipe", b'{"part_id": "77"}', {"Content-Type": "application/json"}, 404),
    ("POST", "/v1/test/wipe", b'{"part_id": 0}', {"Content-Type": "application/json"}, 422),
    ("POST", "/v1/replay", b'{"part_ids": [0]}', {"Content-Type": "application/json"}, 422),
    ("GET", "/v1/nothing-here", None, {}, 404),
    ("DELETE", "/v1/config", None, {}, 405),
]


@pytest.mark.parametrize("method,path,data,headers,expected", BAD_REQUESTS,
                         ids=[f"{m} {p} {e}" for m, p, _, _, e in BAD_REQUESTS])
def test_bad_request_gets_contract_error_and_changes_nothing(lab, method, path, data, headers, expected):
    before = fingerprint(lab)
    status, response_headers, body = lab.request(method, path, data=data, role="admin", headers=headers)
    assert status == expected, body
    assert response_headers["Content-Type"].startswith("application/json")
    assert body["status"] == expected and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    assert fingerprint(lab) == before


def test_405_names_the_methods_of_the_path(lab):
    status, headers, body = lab.request("DELETE", "/v1/config", role="admin")
    assert status == 405 and body["status"] == 405
    assert set(headers["Allow"].replace(" ", "").split(",")) == {"GET", "PATCH"}


def test_oversized_body_is_413(lab):
    before = fingerprint(lab)
    big = json.dumps({"annotations": {"blob": "x" * (17 * 1024 * 1024)}}).encode()
    status, _, body = lab.request("PATCH", "/v1/config", data=big, role="operator",
                                  headers={"Content-Type": "application/json"})
    assert status == 413 and body["status"] == 413
    assert fingerprint(lab) == before


def test_malformed_stream_lines_answered_in_place(lab):
    before = fingerprint(lab)
    oversized = sample_event("too-big", part_id="2", metric="m", labels={"blob": "y" * (1024 * 1024 + 10)})
    lines = [b"not json", b"[1,2]", json.dumps(sample_event("bad-ts", part_id="2", ts_ns="yesterday")).encode(),
             json.dumps({"event_id": "no-payload", "partition_key": "k", "ts_ns": 1}).encode(),
             json.dumps(sample_event("wrong-part", part_id="3")).encode(), json.dumps(oversized).encode(), b""]
    status, _, text = lab.request("POST", "/v1/partitions/2/append-stream", data=b"\n".join(lines) + b"\n",
                                  role="ingest", headers={"Content-Type": "application/x-ndjson"})
    assert status == 200
    responses = [json.loads(line) for line in text.splitlines()]
    assert len(responses) == len(lines)
    assert all(r["status"] == "PermanentDurability" for r in responses)
    assert {r["cep_status_reason"] for r in responses} == {"PERMANENT_PAYLOAD"}
    assert fingerprint(lab) == before
    assert append_stream(lab, "2", [sample_event("after-bad", part_id="2")])[0]["status"] == "Healthy"


def test_bad_append_fields_are_permanent_payload(lab):
    for message in ({"event_id": "", "partition_key": "k", "ts_ns": 1, "payload": {}},
                    {"event_id": "x1", "partition_key": 5, "ts_ns": 1, "payload": {}},
                    {"event_id": "x2", "partition_key": "k", "ts_ns": 1, "payload": {"metric": "m", "value": "NaN"}},
                    {"event_id": "x3", "partition_key": "k", "ts_ns": 1, "payload": {}, "flags": "REPLAY"}):
        status, _, body = lab.request("POST", "/append", dict(message, part_id="0"), role="ingest")
        assert status == 200 and body["status"] == "PermanentDurability", body
        assert body["cep_status_reason"] == "PERMANENT_PAYLOAD" and body["error"]


def test_not_leader_answer_never_echoes_a_malformed_event_id(lab_factory):
    lab = lab_factory(partitions=1)
    assert lab.request("POST", "/v1/test/faults", {"not_leader": 1})[0] == 200
    status, _, body = lab.request("POST", "/append", {"event_id": {"a": 1}, "part_id": "0", "partition_key": "k",
                                                      "ts_ns": 1, "payload": {}}, role="ingest")
    assert status == 200 and body["cep_status_reason"].startswith("NOT_LEADER") and body["event_id"] is None
