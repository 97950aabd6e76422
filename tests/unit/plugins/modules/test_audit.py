"""audit and audit_info against an in-memory audit log served over HTTP."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "module_utils"))

from ansible_collections.ceptra.backfill.plugins.modules import audit, audit_info  # noqa: E402
from test_client_fakeserver import FakeServer, Reply, run_module  # noqa: E402


class AuditLog:
    """Serves GET/POST /v1/audit like the contract (kind/since filters, 201 on write)."""

    def __init__(self, server):
        self.records = [
            {"id": "a-1", "ts": 100.0, "actor": "spiffe://ceptra.lab/role/admin", "kind": "outage",
             "details": {"part_ids": ["3"]}},
            {"id": "a-2", "ts": 200.0, "actor": "spiffe://ceptra.lab/role/operator", "kind": "config_change",
             "details": {"version": 2}},
        ]
        server.on("GET", "/v1/audit", self.get)
        server.on("POST", "/v1/audit", self.post)

    def get(self, rec):
        out = [r for r in self.records if "kind" not in rec.query or r["kind"] == rec.query["kind"]]
        out = [r for r in out if "since" not in rec.query or r["ts"] >= float(rec.query["since"])]
        return Reply(200, {"records": out})

    def post(self, rec):
        body = json.loads(rec.body)
        record = {"id": "a-%d" % (len(self.records) + 1), "ts": 300.0 + len(self.records),
                  "actor": "spiffe://ceptra.lab/role/operator", "kind": body["kind"], "details": body.get("details", {})}
        self.records.append(record)
        return Reply(201, record)


@pytest.fixture
def server():
    srv = FakeServer()
    srv.log = AuditLog(srv)
    yield srv
    srv.close()


def test_check_mode_then_write_then_rerun_is_unchanged(server, capsys):
    task = {"url": server.url, "kind": "backfill_started", "details": {"incident": "INC-1"}, "record_id": "INC-1-start"}
    code, result = run_module(audit.main, dict(task, _ansible_check_mode=True), capsys)
    assert code == 0 and result["changed"] is True and result["existing"] is False
    assert server.calls("POST") == [] and len(server.log.records) == 2
    code, result = run_module(audit.main, task, capsys)
    assert result["changed"] is True and result["record"]["id"] == "a-3"
    assert result["record"]["details"] == {"incident": "INC-1", "record_id": "INC-1-start"}
    post = server.calls("POST")[0]
    assert post.json() == {"kind": "backfill_started", "details": {"incident": "INC-1", "record_id": "INC-1-start"}}
    code, result = run_module(audit.main, task, capsys)
    assert result["changed"] is False and result["existing"] is True and result["record"]["id"] == "a-3"
    code, result = run_module(audit.main, dict(task, _ansible_check_mode=True), capsys)
    assert result["changed"] is False
    assert len(server.calls("POST")) == 1


def test_without_record_id_the_content_makes_it_idempotent(server, capsys):
    task = {"url": server.url, "kind": "note", "details": {"text": "hello"}}
    code, first = run_module(audit.main, task, capsys)
    code, second = run_module(audit.main, task, capsys)
    assert first["changed"] is True and second["changed"] is False
    assert first["record_id"] == second["record_id"] and first["record_id"].startswith("sha256:")
    code, other = run_module(audit.main, dict(task, details={"text": "bye"}), capsys)
    assert other["changed"] is True and other["record_id"] != first["record_id"]


def test_always_write_writes_every_time(server, capsys):
    task = {"url": server.url, "kind": "replay_batch", "details": {"n": 1}, "always_write": True}
    for _run in range(2):
        code, result = run_module(audit.main, task, capsys)
        assert result["changed"] is True and result["record_id"] is None
    assert len(server.calls("POST")) == 2 and server.calls("GET") == []
    assert "record_id" not in server.log.records[-1]["details"]


def test_diff_shows_the_record(server, capsys):
    task = {"url": server.url, "kind": "note", "details": {"a": 1}, "_ansible_diff": True, "_ansible_check_mode": True}
    code, result = run_module(audit.main, task, capsys)
    assert result["diff"]["before"] == {} and result["diff"]["after"]["kind"] == "note"


def test_conflicting_record_ids_and_403(server, capsys):
    code, result = run_module(audit.main, {"url": server.url, "kind": "k", "record_id": "x",
                                           "details": {"record_id": "y"}}, capsys)
    assert code == 1 and "differs from details.record_id" in result["msg"]
    server.on("POST", "/v1/audit", Reply(403, {"error": "identity spiffe://ceptra.lab/role/observer has role observer; "
                                                        "this call needs operator", "status": 403}))
    code, result = run_module(audit.main, {"url": server.url, "kind": "k"}, capsys)
    assert code == 1
    assert result["msg"].startswith("Could not write the k audit record: POST /v1/audit failed with 403")
    assert "lacks role operator; use an operator certificate or token" in result["msg"]


def test_audit_info_filters(server, capsys):
    code, result = run_module(audit_info.main, {"url": server.url}, capsys)
    assert code == 0 and result["count"] == 2 and result["changed"] is False
    code, result = run_module(audit_info.main, {"url": server.url, "kind": "outage"}, capsys)
    assert [r["id"] for r in result["records"]] == ["a-1"]
    assert server.calls("GET")[-1].query == {"kind": "outage"}
    code, result = run_module(audit_info.main, {"url": server.url, "since": "150"}, capsys)
    assert [r["id"] for r in result["records"]] == ["a-2"]
    code, result = run_module(audit_info.main, {"url": server.url, "actor": "spiffe://ceptra.lab/role/admin"}, capsys)
    assert [r["id"] for r in result["records"]] == ["a-1"]
    run_module(audit.main, {"url": server.url, "kind": "note", "record_id": "r-9"}, capsys)
    code, result = run_module(audit_info.main, {"url": server.url, "record_id": "r-9"}, capsys)
    assert [r["details"]["record_id"] for r in result["records"]] == ["r-9"]
    code, result = run_module(audit_info.main, {"url": server.url, "limit": 1}, capsys)
    assert [r["id"] for r in result["records"]] == ["a-3"]


def test_audit_info_bad_limit(server, capsys):
    code, result = run_module(audit_info.main, {"url": server.url, "limit": -1}, capsys)
    assert code == 1 and "limit" in result["msg"]
