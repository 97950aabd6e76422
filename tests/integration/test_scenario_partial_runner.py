"""scenario_partial end to end, as AWX runs it (ansible-runner, fresh private data dir per job,
CEPTRA_* environment, AWX meta extra vars, the audit callback on), against a lab with an outage
and live traffic flowing throughout, and a reference lab that received every event.

One lab pair and one live-traffic thread serve the whole module (tests run in file order):
the happy path (check mode, run, rerun, verify), the gates that never clear, and a run killed
mid-replay and rerun on a second outage; the last test stops the traffic and compares every
partition's full snapshot with the reference's.
"""

import json
import os
import re
import sqlite3
import time

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._snapshot import diff_snapshots, settled_view

from .runbook_support.faults import set_fault, start_outage, wait_outage_over
from .runbook_support.labs import LabPair, lab_get, snapshot_digests
from .runbook_support.live import LiveTraffic
from .runbook_support.runner import RunnerJob

OUTAGE_A = ["1", "2"]
OUTAGE_B = ["0", "3"]


class Env(object):
    """The module's lab pair, live traffic, history and job runner."""

    def __init__(self, pair, live, workdir):
        self.pair, self.live, self.workdir = pair, live, str(workdir)
        self.history = os.path.join(self.workdir, "history.sqlite")
        self.job = RunnerJob(pair.lab, workdir)
        self.recovered = set()     # partitions whose outage a test recovered

    def vars(self, incident, **extra):
        out = {"ceptra_incident_id": incident,
               "history_replay_source": {"type": "sqlite", "path": self.history},
               "history_replay_cursor_store": {"type": "sqlite", "path": os.path.join(self.workdir, "cursors.sqlite")},
               "validate_reference_cluster": self.pair.reference_connection(),
               "history_replay_time_budget": 2}
        out.update(extra)
        return out

    def config(self):
        return lab_get(self.pair.lab, "/v1/config")

    def audit(self, kind=None):
        return lab_get(self.pair.lab, "/v1/audit" + ("?kind=%s" % kind if kind else ""))["records"]


def _without_empty_ledgers(config):
    annotations = {k: v for k, v in (config.get("annotations") or {}).items() if v}
    return dict(config, annotations=annotations)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("partial")
    with LabPair(partitions=4) as pair:
        live = LiveTraffic(pair, "sqlite:" + os.path.join(str(workdir), "history.sqlite"), rate=200, annotate=1.0)
        with live:
            time.sleep(1.0)
            start_outage(pair.lab, OUTAGE_A, 2000)
            wait_outage_over(pair.lab, OUTAGE_A)
            time.sleep(1.0)    # the archive holds the window's events (committed every 50 ms tick)
            yield Env(pair, live, workdir)


def test_check_run_rerun_and_verify(env):
    """--check prints the plan and changes nothing; the run finds the window by itself, replays it,
    and the lab matches the reference; a rerun changes nothing; verify.yml passes with every item."""
    config_before = env.config()
    audit_before = len(env.audit())
    extravars = env.vars("INC-A")

    planned = env.job.run("scenario_partial.yml", extravars, check=True)
    assert planned.rc == 0, planned.stdout[-3000:]
    plan = planned.set_stats()["ceptra_plan"]
    assert plan["partitions"] == OUTAGE_A and plan["window_source"] == "unavailable_windows"
    assert plan["events"] > 0 and plan["coverage"] == 1.0
    assert sorted(plan["override_settings"]["metrics"]) == plan["impacted_metrics"] != []
    assert "events to replay" in planned.stdout
    assert env.config()["version"] == config_before["version"]
    assert len(env.audit()) == audit_before, "check mode wrote to the control-plane audit log"

    done = env.job.run("scenario_partial.yml", extravars)
    assert done.rc == 0 and done.status == "successful", done.stdout[-4000:]
    assert "replay partial-INC-A" in done.stdout and " p1: " in done.stdout      # progress each round
    assert done.set_stats()["ceptra_replay"]["events_done"] >= plan["events"]
    # The derived-decision gate read real decisions: the live traffic fires the bundle's rules.
    derived = re.search(r"derived events read (\d+)", done.stdout)
    assert derived and int(derived.group(1)) > 0, done.stdout[-3000:]

    # The replayed partitions (and the others) equal the reference's, over the settled panes
    # (live traffic keeps moving the newest ones).
    cutoff = time.time_ns() - 3_000_000_000
    for part in ("0", "1", "2", "3"):
        mine = lab_get(env.pair.lab, "/v1/test/metrics-snapshot?part_id=%s" % part)
        theirs = lab_get(env.pair.reference, "/v1/test/metrics-snapshot?part_id=%s" % part)
        diff = diff_snapshots(settled_view(mine, cutoff), settled_view(theirs, cutoff), max_entries=3)
        assert diff["equal"], (part, diff)

    # Config equals the pre-run config; the audit log holds the run's records with the operator.
    assert _without_empty_ledgers(env.config()["config"]) == _without_empty_ledgers(config_before["config"])
    overrides = [r for r in env.audit("override") if r["details"].get("name") == "backfill-partial-INC-A"]
    assert [r["details"]["action"] for r in overrides][:1] == ["created"] and len(overrides) >= 2
    assert all(r["actor"] == "spiffe://ceptra.lab/role/operator" for r in overrides)
    replay = [r for r in env.audit("replay") if r["details"].get("run_id") == "partial-INC-A"]
    assert replay and all(r["actor"] == "spiffe://ceptra.lab/role/operator" for r in replay)
    completed = env.audit("backfill_completed")
    assert [r["details"]["operator"] for r in completed if r["details"]["run_id"] == "partial-INC-A"] == ["alice"]

    again = env.job.run("scenario_partial.yml", extravars)
    assert again.rc == 0 and again.changed == 0, again.stdout[-3000:]
    assert "already completed, nothing to do" in again.stdout

    verified = env.job.run("verify.yml", extravars)
    assert verified.rc == 0, verified.stdout[-3000:]
    with open(os.path.join(env.workdir, "reports", "verify-partial-INC-A.json")) as handle:
        report = json.load(handle)
    items = {item["id"]: item for item in report["checklist"]}
    assert sorted(items) == sorted(["cursor_at_horizon", "overrides_reverted", "ready", "lags_within_slo",
                                    "tiers_hold_window", "audit_records"])
    assert all(item["ok"] is True and item["evidence"] for item in items.values())
    assert report["summary"]["ok"] is True
    with open(os.path.join(env.workdir, "reports", "verify-partial-INC-A.md")) as handle:
        markdown = handle.read()
    assert all(item["name"] in markdown for item in items.values())
    env.recovered.update(OUTAGE_A)


def test_coverage_below_threshold_fails_naming_the_gate(env):
    """Annotations the secondary system did not write: the run stops at the coverage gate, before
    anything changed, and records the failure."""
    config_before = env.config()
    failed = env.job.run("scenario_partial.yml", env.vars("INC-COV", discover_annotation_attributes=["no_such_mark"],
                                                          discover_annotation_flags=[]))
    assert failed.rc != 0 and failed.status == "failed"
    assert "Gate: the secondary system annotated the window" in failed.stdout
    assert 'scenario_partial failed at "Gate: the secondary system annotated the window"' in failed.stdout
    assert env.config()["config"] == config_before["config"]
    records = [r for r in env.audit("backfill_failed") if r["details"]["run_id"] == "partial-INC-COV"]
    assert records and records[0]["details"]["step"] == "Gate: the secondary system annotated the window"


def test_reference_mismatch_fails_with_the_override_restored(env):
    """A validation gate that never clears while the override is staged: rescue restores it."""
    config_before = env.config()
    failed = env.job.run("scenario_partial.yml", env.vars(
        "INC-REF", validate_reference_cluster={}, validate_reference_partition="3", validate_check_derived_events=False))
    assert failed.rc != 0
    assert 'scenario_partial failed at "Gate: the replayed partitions match the reference"' in failed.stdout
    assert failed.statuses.get("Restore the defaults (revert the overrides this run staged)") == "ok"
    assert "backfill-partial-INC-REF" in json.dumps([r["details"] for r in env.audit("override")])
    assert _without_empty_ledgers(env.config()["config"]) == _without_empty_ledgers(config_before["config"])


def test_readiness_that_never_returns_fails_naming_the_gate(env):
    """Replication lag that never clears: the readiness gate fails the run, defaults restored."""
    config_before = env.config()
    set_fault(env.pair.lab, part_id="1", replication_lag_ms=60000)
    try:
        failed = env.job.run("scenario_partial.yml", env.vars(
            "INC-RDY", history_replay_throttle=False, horizon_watch_readiness_timeout=3))
    finally:
        set_fault(env.pair.lab, part_id="1", replication_lag_ms=0)
    assert failed.rc != 0
    assert 'scenario_partial failed at "Gate: the replayed partitions are ready again"' in failed.stdout
    ledger = env.config()["config"].get("annotations", {}).get("ceptra.backfill/overrides", {})
    assert "backfill-partial-INC-RDY" not in ledger
    assert _without_empty_ledgers(env.config()["config"]) == _without_empty_ledgers(config_before["config"])


def _replayed(cursors_path, run_id):
    """True once the run's cursors hold committed progress (the replay is under way)."""
    if not os.path.exists(cursors_path):
        return False
    try:
        with sqlite3.connect(cursors_path, timeout=1) as conn:
            done = conn.execute("SELECT COALESCE(SUM(events_done), 0) FROM replay_cursors WHERE run_id = ?",
                                (run_id,)).fetchone()[0]
    except sqlite3.Error:      # not created yet
        return False
    return done > 0


def test_killed_mid_replay_resumes_and_every_event_applies_once(env):
    """A second outage; the run is killed mid-replay (AWX cancel), rollback.yml reverts the override
    it left behind, and the rerun resumes and finishes; after the traffic stops every partition
    equals the reference exactly (every event applied once)."""
    since = time.time_ns()
    start_outage(env.pair.lab, OUTAGE_B, 3000)
    wait_outage_over(env.pair.lab, OUTAGE_B)
    time.sleep(1.0)
    # about 250 events per partition at 25 events/s: the replay takes ~10 s, long enough to kill
    extravars = env.vars("INC-B", discover_since_ns=since, history_replay_max_rate=25,
                         history_replay_initial_rate=25, history_replay_time_budget=1)
    job, cancel = env.job.start("scenario_partial.yml", extravars)
    cursors = extravars["history_replay_cursor_store"]["path"]
    deadline = time.monotonic() + 240
    while not _replayed(cursors, "partial-INC-B") and time.monotonic() < deadline:
        time.sleep(0.1)
    cancel()
    killed = job.wait()
    assert killed.status == "canceled", killed.stdout[-2000:]
    # A killed run leaves its override staged (no rescue ran); rollback.yml reverts it.
    ledger = env.config()["config"]["annotations"].get("ceptra.backfill/overrides", {})
    assert "backfill-partial-INC-B" in ledger
    rolled_back = env.job.run("rollback.yml", {"ceptra_incident_id": "INC-B"})
    assert rolled_back.rc == 0, rolled_back.stdout[-2000:]
    assert "backfill-partial-INC-B" not in env.config()["config"]["annotations"].get("ceptra.backfill/overrides", {})
    extravars.pop("history_replay_max_rate")
    resumed = env.job.run("scenario_partial.yml", dict(extravars, history_replay_initial_rate=2000))
    assert resumed.rc == 0, resumed.stdout[-4000:]
    assert resumed.set_stats()["ceptra_plan"]["partitions"] == OUTAGE_B
    totals = env.live.stop()
    assert totals["refused"] > 0 and totals["mirrored"] == totals["archived"]
    env.recovered.update(OUTAGE_B)
    mine, theirs = snapshot_digests(env.pair.lab), snapshot_digests(env.pair.reference)
    # every partition when the whole module ran (an outage no test recovered stays different)
    assert {p: mine[p] for p in env.recovered} == {p: theirs[p] for p in env.recovered}
    assert set(mine) == set(theirs) == {"0", "1", "2", "3"}
