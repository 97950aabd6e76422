"""scenario_policy end to end, as AWX runs it (ansible-runner): policy V -> V+1 with an
``upgrade: false`` metric and a 30-day window over history the lab never saw, live traffic on
throughout (issue 14).

The lab's latest full checkpoint precedes every live event (checkpoint cadence 5 min, the test
ends sooner), so the WAL replay from it rebuilds the whole log for the ``upgrade: false`` metric:
the guide's "ensure retained WAL covers the entire time span" (docs/scenario-policy.md says what
happens otherwise, and the preflight reports it as ``wal_coverage``).

The reference lab runs V+1 from the start with wide L and C and receives every event (the
archive and the live traffic); after the scenario each partition's V+1 metrics snapshot equals
the reference's.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time

from ceptra_lab.testing import append_stream

from .policy_lab import (DATA, V2, LagSampler, Live, archived_events, config_of, policy_lab, reference_lab, v2_metrics,
                         write_archive)
from .runbook_support.labs import lab_get, snapshot_digests
from .runbook_support.runner import RunnerJob

REPLAY_TASK = "Replay the window in slices until every partition is done"


# ---------------------------------------------------------------------------------------------- helpers
def task_span(result, task):
    """Wall-clock (start, end) of a task in a runner job, from its events."""
    stamps = []
    for event in result.events:
        data = event.get("event_data") or {}
        if data.get("task") == task and event.get("created"):
            created = datetime.datetime.fromisoformat(event["created"].replace("Z", "+00:00"))
            if created.tzinfo is None:
                created = created.replace(tzinfo=datetime.timezone.utc)
            stamps.append(created.timestamp())
    assert stamps, "task %r did not run" % task
    return min(stamps), max(stamps)


def scenario_vars(tmp_path, window, bundle=V2, **extra):
    start_ns, end_ns = window
    values = {"ceptra_incident_id": "CHG-%d" % (time.time_ns() % 10 ** 9), "policy_preflight_bundle_src": bundle,
              "history_replay_source": {"type": "sqlite", "path": str(tmp_path / "archive.db")},
              "history_replay_cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.db")},
              "history_replay_window_start_ns": start_ns, "history_replay_window_end_ns": end_ns,
              "history_replay_time_budget": 3, "history_replay_initial_rate": 1500,
              "activation_poll_interval": 0.3, "wal_replay_poll_interval": 0.5,
              "horizon_watch_readiness_timeout": 120}
    values.update(extra)
    return values


# ---------------------------------------------------------------------------------------------- tests
def test_policy_v_plus_one_with_extended_backfill_under_live_traffic(tmp_path):
    lab, reference = policy_lab(), reference_lab()
    live = sampler = None
    try:
        window = write_archive(str(tmp_path / "archive.db"), time.time_ns())
        for part_id, events in archived_events(str(tmp_path / "archive.db")).items():
            append_stream(reference, part_id, events)
        live = Live(lab, reference).start()
        time.sleep(2)
        job = RunnerJob(lab, tmp_path)
        values = scenario_vars(tmp_path, window)
        baseline = config_of(lab)
        audit_before = len(lab_get(lab, "/v1/audit")["records"])

        planned = job.run("scenario_policy.yml", values, check=True)          # --check prints the plan
        assert planned.rc == 0, planned.stdout[-3000:]
        plan = planned.set_stats()["ceptra_plan"]
        assert plan["upgrade_false_metrics"] == ["flags_peak"] and plan["needs_wal_replay"] is True
        assert sorted(plan["affected_metrics"]) == ["flags_1h", "flags_30d", "flags_peak"]
        assert "override backfill-policy-" in planned.stdout and "WAL replay before activation: True" in planned.stdout
        assert config_of(lab) == baseline
        assert len(lab_get(lab, "/v1/audit")["records"]) == audit_before
        assert lab_get(lab, "/v1/definitions")["active"]["def_version"] == 1

        sampler = LagSampler(lab).start()
        running, cancel = job.start("scenario_policy.yml", values)          # killed mid-replay ...
        deadline = time.monotonic() + 300
        while not any(s.get("last_seq", 0) > 100 for p in lab_get(lab, "/v1/state")["partitions"]
                      for s in p["replay_sessions"].values()):
            assert time.monotonic() < deadline, "the extended replay never started"
            time.sleep(0.2)
        cancel()
        interrupted = running.wait()
        assert interrupted.status in ("canceled", "failed")
        resumed = job.run("scenario_policy.yml", values)                    # ... and resumed
        assert resumed.rc == 0, resumed.stdout[-4000:]
        sampler.stop()
        live.stop()

        start, end = task_span(resumed, REPLAY_TASK)
        p99, samples = sampler.p99_between(start, end)
        print("\napply lag p99 during the extended replay: %.1f ms over %d samples (%.1f s)" % (p99, samples, end - start))
        assert p99 <= 200
        assert live.refused == 0, "live events were refused"
        committed = [r["details"] for r in lab_get(lab, "/v1/audit?kind=activation_committed")["records"]]
        print("live events sent %d, refused %d; barrier %s" % (live.sent, live.refused, committed[-1]))
        got, want = v2_metrics(lab), v2_metrics(reference)
        for part_id in want:
            assert sorted(got[part_id]) == sorted(want[part_id]) == ["__events__", "flags_1h", "flags_30d", "flags_peak"]
            assert got[part_id] == want[part_id], "partition %s differs from the reference" % part_id
        assert snapshot_digests(lab) == snapshot_digests(reference)
        state = lab_get(lab, "/v1/state")
        assert {p["def_version"] for p in state["partitions"]} == {2}
        after = config_of(lab)
        assert after["config"]["metrics"] == baseline["config"]["metrics"] == {}
        kinds = [r["kind"] for r in lab_get(lab, "/v1/audit")["records"]]
        assert "activation_committed" in kinds and "replay_job" in kinds and "backfill_completed" in kinds

        again = job.run("scenario_policy.yml", values)                       # rerun after success
        assert again.rc == 0 and again.changed == 0, again.stdout[-3000:]
        assert "already completed, nothing to do" in again.stdout

        reports = tmp_path / "reports"
        verified = job.run("verify.yml", dict(values, ceptra_run_id="policy-" + values["ceptra_incident_id"],
                                              checklist_report_dir=str(reports)))
        assert verified.rc == 0, verified.stdout[-3000:]
        with open(str(reports / ("verify-policy-%s.json" % values["ceptra_incident_id"]))) as handle:
            report = json.load(handle)
        assert report["summary"]["ok"] is True and all(item["ok"] for item in report["checklist"])
    finally:
        for thing in (live, sampler):
            if thing is not None:
                thing.stop()
        lab.__exit__(None, None, None)
        reference.__exit__(None, None, None)


def _refused_before_any_change(lab, result, gate, words):
    assert result.rc != 0
    assert gate in result.failed_tasks(), result.failed_tasks()
    message = result.results[gate].get("msg", "")
    for word in words:
        assert word in message, message
    assert "Gate 'policy preflight' failed" in message or gate != "Gate: policy preflight"


def test_preflight_failures_and_a_failed_shadow_stop_the_run_naming_what_to_fix(tmp_path):
    lab = policy_lab(shadow_warmup_ms=30000)        # the barrier waits long enough for the fault
    try:
        window = write_archive(str(tmp_path / "archive.db"), time.time_ns())
        job = RunnerJob(lab, tmp_path)
        baseline, definitions = config_of(lab), lab_get(lab, "/v1/definitions")

        for bundle, words in ((os.path.join(DATA, "policy_v2_missing_attribute.yaml"),
                               ["metric flags_30d reads label device of flags_total", "history does not provide"]),
                              (os.path.join(DATA, "policy_v2_lanes.yaml"),
                               ["flags_30d", "128 lanes per partition", "LANE_MAX_PER_PARTITION 64"])):
            result = job.run("scenario_policy.yml", scenario_vars(tmp_path, window, bundle=bundle))
            _refused_before_any_change(lab, result, "Gate: policy preflight", words)
            assert config_of(lab) == baseline and lab_get(lab, "/v1/definitions") == definitions

        # A partition whose shadow fails while the barrier waits: the barrier is aborted, nothing else stays.
        def fail_shadow_once_the_barrier_is_pending():
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                status, _headers, ready = lab.request("GET", "/readyz", role="observer")
                barrier = ready.get("activation_barrier_id") if isinstance(ready, dict) else None
                if barrier and lab_get(lab, "/v1/activate/%s" % barrier)["state"] == "pending":
                    lab.request("POST", "/v1/test/faults", {"part_id": "1", "shadow_state": "SHADOW_FAILED"})
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=fail_shadow_once_the_barrier_is_pending, daemon=True)
        watcher.start()
        result = job.run("scenario_policy.yml", scenario_vars(tmp_path, window))
        watcher.join(5)
        assert result.rc != 0
        assert "Gate: activation barrier committed" in result.failed_tasks(), result.failed_tasks()
        message = result.results["Gate: activation barrier committed"]["msg"]
        assert "shadow failure: 1" in message and "exclude_partitions" in message and "abort" in message
        barrier = lab.request("GET", "/readyz", role="observer")[2]["activation_barrier_id"]   # 503: not ready
        assert lab_get(lab, "/v1/activate/%s" % barrier)["state"] == "aborted"
        assert lab_get(lab, "/v1/definitions")["active"]["def_version"] == 1
        assert config_of(lab)["config"] == baseline["config"]
        assert "Fail naming the gate" in result.failed_tasks()
    finally:
        lab.__exit__(None, None, None)
