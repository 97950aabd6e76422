"""audit and audit_info against the in-memory control plane's audit log."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.modules import audit, audit_info

from ..test_support.control_plane import ControlPlane


@pytest.fixture
def plane():
    """A control plane whose audit log already holds two records."""
    cp = ControlPlane()
    cp.audit.extend([
        {"id": "a-1", "ts": 100.0, "actor": "spiffe://ceptra.lab/role/admin", "kind": "outage",
         "details": {"part_ids": ["3"]}},
        {"id": "a-2", "ts": 200.0, "actor": "spiffe://ceptra.lab/role/operator", "kind": "config_change",
         "details": {"version": 2}},
    ])
    return cp


def posts(plane):
    return [c for c in plane.calls if c.method == "POST"]


def test_check_mode_then_write_then_rerun_is_unchanged(plane, run_module):
    task = {"kind": "backfill_started", "details": {"incident": "INC-1"}, "record_id": "INC-1-start"}
    failed, result = run_module(audit, task, plane, check_mode=True)
    assert not failed and result["changed"] is True and result["existing"] is False
    assert posts(plane) == [] and len(plane.audit) == 2
    failed, result = run_module(audit, task, plane)
    assert result["changed"] is True and result["record"]["id"] == "a-3"
    assert result["record"]["details"] == {"incident": "INC-1", "record_id": "INC-1-start"}
    assert posts(plane)[0].body == {"kind": "backfill_started",
                                    "details": {"incident": "INC-1", "record_id": "INC-1-start"}}
    failed, result = run_module(audit, task, plane)
    assert result["changed"] is False and result["existing"] is True and result["record"]["id"] == "a-3"
    failed, result = run_module(audit, task, plane, check_mode=True)
    assert result["changed"] is False
    assert len(posts(plane)) == 1


def test_without_record_id_the_content_makes_it_idempotent(plane, run_module):
    task = {"kind": "note", "details": {"text": "hello"}}
    failed, first = run_module(audit, task, plane)
    failed, second = run_module(audit, task, plane)
    assert first["changed"] is True and second["changed"] is False
    assert first["record_id"] == second["record_id"] and first["record_id"].startswith("sha256:")
    failed, other = run_module(audit, dict(task, details={"text": "bye"}), plane)
    assert other["changed"] is True and other["record_id"] != first["record_id"]


def test_always_write_writes_every_time(plane, run_module):
    task = {"kind": "replay_batch", "details": {"n": 1}, "always_write": True}
    for _run in range(2):
        failed, result = run_module(audit, task, plane)
        assert result["changed"] is True and result["record_id"] is None
    assert len(posts(plane)) == 2 and [c for c in plane.calls if c.method == "GET"] == []
    assert "record_id" not in plane.audit[-1]["details"]


def test_diff_shows_the_record(plane, run_module):
    failed, result = run_module(audit, {"kind": "note", "details": {"a": 1}}, plane, check_mode=True, diff=True)
    assert result["diff"]["before"] == {} and result["diff"]["after"]["kind"] == "note"


def test_conflicting_record_ids_and_403(plane, run_module):
    failed, result = run_module(audit, {"kind": "k", "record_id": "x", "details": {"record_id": "y"}}, plane)
    assert failed and "differs from details.record_id" in result["msg"]
    plane.role = "observer"
    failed, result = run_module(audit, {"kind": "k"}, plane)
    assert failed
    assert result["msg"].startswith("Could not write the k audit record: POST /v1/audit failed with 403")
    assert "lacks role operator; use an operator certificate or token" in result["msg"]


def test_audit_info_filters(plane, run_module):
    failed, result = run_module(audit_info, {}, plane)
    assert not failed and result["count"] == 2 and result["changed"] is False
    failed, result = run_module(audit_info, {"kind": "outage"}, plane)
    assert [r["id"] for r in result["records"]] == ["a-1"]
    assert plane.calls[-1].query == {"kind": "outage"}
    failed, result = run_module(audit_info, {"since": "150"}, plane)
    assert [r["id"] for r in result["records"]] == ["a-2"]
    failed, result = run_module(audit_info, {"actor": "spiffe://ceptra.lab/role/admin"}, plane)
    assert [r["id"] for r in result["records"]] == ["a-1"]
    run_module(audit, {"kind": "note", "record_id": "r-9"}, plane)
    failed, result = run_module(audit_info, {"record_id": "r-9"}, plane)
    assert [r["details"]["record_id"] for r in result["records"]] == ["r-9"]
    failed, result = run_module(audit_info, {"limit": 1}, plane)
    assert [r["id"] for r in result["records"]] == ["a-3"]


def test_audit_info_bad_limit(plane, run_module):
    failed, result = run_module(audit_info, {"limit": -1}, plane)
    assert failed and "limit" in result["msg"]
