"""The run report: checklist input, progress series, rendering with and without matplotlib."""

from __future__ import annotations

import datetime
import json
import os
import sys

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain
from ansible_collections.ceptra.backfill.plugins.module_utils import _report as report
from ansible_collections.ceptra.backfill.plugins.module_utils import _report_charts as charts


T0 = datetime.datetime(2026, 11, 27, 10, 0, 0, tzinfo=datetime.timezone.utc)
CHECKLIST = [
    {"name": "Every partition applied the window", "ok": True, "evidence": {"0": 800, "1": 800}, "section": "Step 4"},
    {"name": "Digests equal the reference", "ok": False, "evidence": "p1 sha256:aa != sha256:bb"},
    {"name": "Overrides reverted", "ok": None},
]


def stamp(seconds):
    return (T0 + datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def progress(round_no, parts=2, per_part=800):
    out = {}
    for p in range(parts):
        done = min(per_part, round_no * 200 * (p + 1))
        out[str(p)] = {"status": "done" if done == per_part else "running", "events_done": done,
                       "events_total": per_part, "rate_eps": 200.0 * (p + 1), "eta_s": (per_part - done) / 200.0,
                       "apply_lag_ms": 40.0 + 10 * round_no, "replication_lag_ms": 20.0 + p}
    return {"run_id": "inc-1", "partitions": out}


def audit_log(path, rounds=4, extra_runs=()):
    writer = chain.ChainWriter(str(path))
    writer.append({"time": stamp(0), "run": "scenario", "event": "run_start", "operator": "alice",
                   "awx_job": {"job_id": 42, "job_template_name": "Partial"}, "playbook": "/p/scenario.yml"})
    writer.append({"time": stamp(1), "run": "scenario", "event": "task", "task": "Gate", "status": "ok",
                   "changed": False, "failed": False, "skipped": False})
    for i in range(1, rounds + 1):
        writer.append({"time": stamp(i * 5), "run": "scenario", "event": "retry", "host": "w1", "task": "Replay",
                       "progress": progress(i)})
    writer.append({"time": stamp(30), "run": "scenario", "event": "task", "task": "Replay", "status": "ok",
                   "changed": True, "failed": False, "skipped": False, "host": "w1", "progress": progress(rounds + 1)})
    writer.append({"time": stamp(31), "run": "scenario", "event": "task", "task": "Optional step", "status": "failed",
                   "failed": True, "ignored": True, "host": "w1", "msg": "<b>boom</b>"})
    writer.append({"time": stamp(32), "run": "scenario", "event": "run_end"})
    for run in extra_runs:
        writer.append({"time": stamp(40), "run": run, "event": "run_start", "operator": "bob"})
    return chain.verify_chain(str(path), keep=lambda r: True)


def test_checklist_shape_errors_name_the_item():
    with pytest.raises(report.ReportError, match="checklist must be a list"):
        report.normalize_checklist({"name": "x"})
    with pytest.raises(report.ReportError, match=r"checklist\[1\] needs a non-empty name"):
        report.normalize_checklist([{"name": "a", "ok": True}, {"ok": True}])
    with pytest.raises(report.ReportError, match=r"checklist\[0\] \(a\) needs ok"):
        report.normalize_checklist([{"name": "a"}])
    with pytest.raises(report.ReportError, match="ok must be true, false or null, got 'yes'"):
        report.normalize_checklist([{"name": "a", "ok": "yes"}])
    with pytest.raises(report.ReportError, match="unknown key.*passed; allowed: name, ok, evidence, section, id"):
        report.normalize_checklist([{"name": "a", "ok": True, "passed": True}])


def test_checklist_items_are_cleaned_and_evidence_redacted():
    items = report.normalize_checklist([{"name": " a ", "ok": True, "id": 7,
                                         "evidence": {"dsn": "host=db password=hunter22"}}])
    assert items == [{"name": "a", "ok": True, "evidence": {"dsn": "host=db password=********"}, "id": "7"}]


def test_runs_default_to_the_latest_run_with_progress(tmp_path):
    log = audit_log(tmp_path / "a.jsonl", extra_runs=("verify",))
    assert report.select_runs(log) == ["scenario"]
    assert report.select_runs(log, ["verify"]) == ["verify"]
    with pytest.raises(report.ReportError, match="run.*nope are not in the audit log"):
        report.select_runs(log, ["nope"])
    quiet = chain.verify_chain(str(tmp_path / "a.jsonl"), keep=lambda r: not r.get("progress"))
    assert report.select_runs(quiet, current_run="verify") == ["scenario"]


def test_progress_points_per_partition_in_time_order(tmp_path):
    log = audit_log(tmp_path / "a.jsonl")
    extra = dict(progress(9), finished_at=(T0 + datetime.timedelta(seconds=60)).timestamp())
    series = report.progress_points(log["kept"], [extra])
    assert list(series) == ["0", "1"]
    assert [p["elapsed_s"] for p in series["0"]] == [0.0, 5.0, 10.0, 15.0, 25.0, 55.0]
    assert series["1"][0] == {"time": "2026-11-27T10:00:05Z", "elapsed_s": 0.0, "host": "w1", "status": "running",
                              "events_done": 400, "events_total": 800, "pct": 50.0, "rate_eps": 400.0, "eta_s": 2.0,
                              "apply_lag_ms": 50.0, "replication_lag_ms": 21.0}
    with pytest.raises(report.ReportError, match="not a replay result"):
        report.progress_points([], [{"msg": "x"}])


def test_model_summary_and_runs(tmp_path):
    log = audit_log(tmp_path / "a.jsonl")
    model = report.build_model("R", CHECKLIST, log, ["scenario"])
    assert model["summary"] == {"ok": False, "checklist_ok": False, "items": 3, "passed": 1, "failed": 1,
                                "unchecked": 1, "audit_chain_ok": True}
    run = model["runs"][0]
    assert run["operator"] == "alice" and run["awx_job"]["job_id"] == 42
    assert run["tasks"] == {"ok": 1, "changed": 1, "failed": 0, "skipped": 0, "ignored": 1}
    assert model["partitions"][0]["status"] == "done" and model["partitions"][1]["peak_rate_eps"] == 400.0
    assert model["time"] == stamp(32)
    good = report.build_model("R", [{"name": "a", "ok": True}], log, ["scenario"])
    assert good["summary"]["ok"] is True
    assert report.build_model("R", [], log, ["scenario"])["summary"]["ok"] is False   # nothing checked


def test_html_escapes_and_shows_tables_without_charts(tmp_path):
    log = audit_log(tmp_path / "a.jsonl")
    model = report.build_model("<R&D>", CHECKLIST + [{"name": "<script>x</script>", "ok": True}], log, ["scenario"])
    page = report.render_html(model, None, "no matplotlib here")
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "&lt;R&amp;D&gt;" in page
    assert "<b>boom</b>" not in page and "no matplotlib here" in page
    assert "<h3>Partition 1</h3>" in page and "<img" not in page
    markdown = report.render_markdown(model, None)
    assert "| FAIL | Digests equal the reference | p1 sha256:aa != sha256:bb |" in markdown
    assert '| PASS | Step 4: Every partition applied the window | `{"0": 800, "1": 800}` |' in markdown
    assert "### Partition 0" in markdown and "![" not in markdown


def test_charts_are_png_and_the_same_for_the_same_data(tmp_path):
    log = audit_log(tmp_path / "a.jsonl")
    model = report.build_model("R", CHECKLIST, log, ["scenario"])
    first = charts.render_charts(model)
    assert [c["name"] for c in first] == list(charts.CHART_NAMES)
    assert all(c["png"].startswith(b"\x89PNG\r\n\x1a\n") for c in first)
    assert [c["png"] for c in charts.render_charts(model)] == [c["png"] for c in first]
    page = report.render_html(model, first)
    assert page.count('<img class="chart"') == 4 and "<h3>Partition" not in page
    markdown = report.render_markdown(model, [(c["title"], "report-%s.png" % c["name"]) for c in first])
    assert "![Replay rate per partition](report-rate.png)" in markdown


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make ``import matplotlib`` fail as on a controller without it."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_the_module_writes_tables(tmp_path, capsys, no_matplotlib, run_module):
    assert charts.load_matplotlib() is None
    log = tmp_path / "a.jsonl"
    audit_log(log)
    dest = tmp_path / "out"
    from ansible_collections.ceptra.backfill.plugins.modules import report as module
    failed, result = run_module(module, {"dest": str(dest), "checklist": CHECKLIST, "audit_log": str(log)})
    assert not failed and result["charts_rendered"] is False and "matplotlib" in result["charts_note"]
    assert sorted(os.listdir(dest)) == ["report.html", "report.json", "report.md"]
    assert "<h3>Partition 0</h3>" in (dest / "report.html").read_text()
    failed, result = run_module(module, {"dest": str(dest), "checklist": CHECKLIST, "audit_log": str(log),
                                         "charts": "required"})
    assert failed and "matplotlib is not installed" in result["msg"]


def test_module_writes_charts_then_changes_nothing(tmp_path, run_module):
    log = tmp_path / "a.jsonl"
    audit_log(log)
    dest = tmp_path / "out"
    from ansible_collections.ceptra.backfill.plugins.modules import report as module
    args = {"dest": str(dest), "checklist": CHECKLIST, "audit_log": str(log), "thresholds": {"apply_lag_ms": 150}}
    failed, result = run_module(module, dict(args, _ansible_check_mode=True))
    assert not failed and result["changed"] and not dest.exists()
    failed, result = run_module(module, args)
    assert not failed and result["changed"] and result["charts_rendered"] and len(result["files"]["charts"]) == 4
    assert result["summary"]["failed"] == 1 and result["runs"] == ["scenario"]
    data = json.loads((dest / "report.json").read_text())
    assert data["thresholds"]["apply_lag_ms"] == 150.0 and data["checklist"][0]["section"] == "Step 4"
    failed, again = run_module(module, args)
    assert again["changed"] is False and again["changed_files"] == []
    failed, tables = run_module(module, dict(args, charts="none"))
    assert tables["changed"] and not any(name.endswith(".png") for name in os.listdir(dest))


def test_module_names_bad_input(tmp_path, run_module):
    from ansible_collections.ceptra.backfill.plugins.modules import report as module
    failed, result = run_module(module, {"dest": str(tmp_path), "checklist": [{"name": "x"}]})
    assert failed and "checklist[0] (x) needs ok" in result["msg"]
    failed, result = run_module(module, {"dest": str(tmp_path), "checklist": [], "thresholds": {"lag": 1}})
    assert failed and "thresholds: unknown key 'lag'" in result["msg"]
