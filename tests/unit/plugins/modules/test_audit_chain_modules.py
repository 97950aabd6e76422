"""audit_chain_info and audit_log_check on real log files."""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain
from ansible_collections.ceptra.backfill.plugins.modules import audit_chain_info, audit_log_check


def make_log(path, runs=("r1",), per_run=3):
    writer = chain.ChainWriter(str(path))
    for run in runs:
        writer.append({"event": "run_start", "run": run, "operator": "alice", "time": "2026-11-27T10:00:00Z"})
        for i in range(per_run):
            writer.append({"event": "task", "run": run, "task": "t%d" % i})
    return chain.verify_chain(str(path))


def anchor_record(details):
    return {"id": "a-9", "ts": 1.0, "actor": "spiffe://ceptra.lab/role/operator", "kind": chain.ANCHOR_KIND,
            "details": details}


def test_info_reports_head_runs_and_anchor_details(tmp_path, capsys, monkeypatch, run_module):
    log = tmp_path / "audit.jsonl"
    make_log(log, runs=("r1", "r2"))
    monkeypatch.setenv("CEPTRA_AUDIT_LOG", str(log))
    monkeypatch.setenv("CEPTRA_AUDIT_RUN_ID", "r2")
    failed, result = run_module(audit_chain_info, {})
    assert not failed and result["ok"] and result["changed"] is False
    assert result["head"]["seq"] == 8 and result["records"] == 8
    assert [r["run"] for r in result["runs"]] == ["r1", "r2"] and result["runs"][1]["first_seq"] == 5
    assert result["anchor_details"]["seq"] == 8 and result["anchor_details"]["chain"] == result["chain_id"]
    assert result["anchor_details"]["log_path"] == str(log) and result["run_id"] == "r2"
    assert result["anchor"] is None and result["anchor_ok"] is None


def test_info_compares_with_the_latest_anchor_of_the_records(tmp_path, run_module):
    log = tmp_path / "audit.jsonl"
    report = make_log(log)
    details = chain.anchor_details(report)
    make_log(log, runs=("r2",), per_run=1)
    failed, result = run_module(audit_chain_info, {"path": str(log), "anchor_records": [
        anchor_record(dict(details, seq=1, hash=report["hashes"][1])), anchor_record(details)]})
    assert result["ok"] and result["anchor_ok"] and result["anchor"]["seq"] == 4
    assert result["records_after_anchor"] == 2


def test_info_reports_a_cut_tail_and_a_missing_anchor(tmp_path, run_module):
    log = tmp_path / "audit.jsonl"
    details = chain.anchor_details(make_log(log))
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:2]))
    failed, result = run_module(audit_chain_info, {"path": str(log), "anchor": details})
    assert not failed and result["ok"] is False and result["anchor_ok"] is False
    assert result["problems"] == ["the log ends at seq 2 but the control plane anchored seq 4: "
                                  "2 record(s) at its end were cut"]
    failed, result = run_module(audit_chain_info, {"path": str(log), "anchor_records": []})
    assert result["ok"] is False and "holds no anchor" in result["problems"][0]


def test_info_reports_a_missing_log(tmp_path, run_module):
    failed, result = run_module(audit_chain_info, {"path": str(tmp_path / "none.jsonl")})
    assert not failed and result["ok"] is False and result["exists"] is False
    assert "does not exist" in result["problems"][0]


def test_info_without_a_path_says_how_to_get_one(tmp_path, capsys, monkeypatch, run_module):
    monkeypatch.delenv("CEPTRA_AUDIT_LOG", raising=False)
    failed, result = run_module(audit_chain_info, {})
    assert failed and "enable the ceptra.backfill.audit callback" in result["msg"]


def test_gate_passes_for_a_recorded_run(tmp_path, run_module):
    log = tmp_path / "audit.jsonl"
    make_log(log, runs=("r1", "r2"))
    failed, result = run_module(audit_log_check, {"path": str(log), "run_id": "r2"})
    assert not failed and result["changed"] is False and result["head"]["seq"] == 8


def test_gate_fails_for_a_run_the_log_does_not_hold(tmp_path, run_module):
    log = tmp_path / "audit.jsonl"
    make_log(log)
    failed, result = run_module(audit_log_check, {"path": str(log), "run_id": "r9"})
    assert failed and "holds no record of run r9" in result["msg"]


def test_gate_fails_in_a_missing_directory(tmp_path, run_module):
    failed, result = run_module(audit_log_check, {"path": str(tmp_path / "nope" / "a.jsonl"), "run_id": "r1"})
    assert failed and "the audit log cannot be written: the directory" in result["msg"]
