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
import random
import sqlite3
import threading
import time

from ceptra_lab import traffic
from ceptra_lab.testing import LabProcess, append_stream

from .runbook_support.labs import lab_get, snapshot_digests, wait_applied
from .runbook_support.runner import RunnerJob

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "policy")
V1, V2 = os.path.join(DATA, "policy_v1.yaml"), os.path.join(DATA, "policy_v2.yaml")
DAY_MS = 86400000
S = 1_000_000_000
PARTITIONS = 2
HISTORY_EVENTS = 1500                     # per partition, 20 .. 10 days old
LAB_CONFIG = {"compacted_retention_ms": 40 * DAY_MS, "checkpoint_full_interval_ms": 300000}
REPLAY_TASK = "Replay the window in slices until every partition is done"


# ---------------------------------------------------------------------------------------------- helpers
def upload(lab, path):
    with open(path, "rb") as handle:
        status, _headers, body = lab.request("POST", "/v1/definitions", data=handle.read(), role="operator",
                                             headers={"Content-Type": "application/yaml"})
    assert status == 200, body
    return body["bundle_id"]


def activate(lab, bundle_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        status, _headers, barrier = lab.request("POST", "/v1/activate", {"bundle_id": bundle_id}, role="operator")
        assert status == 200, barrier
        if barrier["state"] == "committed":
            return barrier
        assert time.monotonic() < deadline, barrier
        time.sleep(0.1)


def wal_replay(lab):
    status, _headers, job = lab.request("POST", "/v1/replay", {"reason": "reference"}, role="operator")
    assert status == 200, job
    while lab_get(lab, "/v1/replay/%s" % job["job_id"])["state"] == "running":
        time.sleep(0.05)


def patch_config(lab, patch):
    status, _headers, body = lab.request("PATCH", "/v1/config", patch, role="operator")
    assert status == 200, body


def start_lab(**options):
    lab = LabProcess(partitions=PARTITIONS, test_mode=True, **options)
    lab.__enter__()
    return lab


def policy_lab(shadow_warmup_ms=1000):
    """A lab on policy V whose latest full checkpoint precedes its live traffic."""
    lab = start_lab(extra_args=["--shadow-warmup-ms", str(shadow_warmup_ms), "--apply-capacity", "6000"])
    patch_config(lab, LAB_CONFIG)
    activate(lab, upload(lab, V1), timeout=shadow_warmup_ms / 1000.0 + 30)
    return lab


def reference_lab():
    """V+1 active before any event, L and C wide enough for every event (contract section 5)."""
    lab = start_lab(extra_args=["--shadow-warmup-ms", "50"])
    patch_config(lab, dict(LAB_CONFIG, lateness_allowance_ms=30 * DAY_MS, correction_horizon_ms=30 * DAY_MS))
    bundle_id = upload(lab, V2)
    wal_replay(lab)
    activate(lab, bundle_id)
    return lab


def write_archive(path, now_ns):
    """The history the lab never saw: V+1-shaped events 20 .. 10 days old (window [start, end))."""
    start_ns = now_ns - 20 * DAY_MS * 1_000_000
    step_ms = 10 * DAY_MS // HISTORY_EVENTS
    traffic.seed_history("sqlite:" + path, PARTITIONS, HISTORY_EVENTS, V2, start_ns=start_ns, step_ms=step_ms)
    return start_ns, start_ns + HISTORY_EVENTS * step_ms * 1_000_000


def archived_events(path):
    """Every archived row as an append message (what the reference receives directly)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT part_id, event_time_ns, event_id, partition_key, schema_key, payload "
                            "FROM ceptra_history ORDER BY part_id, event_time_ns, event_id").fetchall()
    finally:
        conn.close()
    events = {}
    for part_id, ts_ns, event_id, key, schema_key, payload in rows:
        events.setdefault(part_id, []).append({"event_id": event_id, "part_id": part_id, "partition_key": key,
                                               "ts_ns": ts_ns, "schema_key": schema_key,
                                               "payload": json.loads(payload), "flags": ["REPLAY"]})
    return events


class Every50ms(object):
    """A daemon thread that calls ``tick()`` every 50 ms from ``start()`` until ``stop()``."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(0.05)

    def tick(self):
        raise NotImplementedError

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)


class Live(Every50ms):
    """Live V-shaped traffic to the lab, mirrored with the same event ids to the reference, ~100 ev/s,
    until stopped. ``refused`` counts events the lab did not accept as Healthy."""

    def __init__(self, lab, reference):
        super().__init__()
        self.lab, self.reference = lab, reference
        self.sent = self.refused = 0
        self.sequence = 0
        self.maker = traffic.SampleMaker(traffic.load_bundle(V1), random.Random(3))
        self.keys = traffic.keys_for_partitions(PARTITIONS, 8)

    def tick(self):
        batch = {}
        for dummy in range(5):
            self.sequence += 1
            sequence = self.sequence
            part_id = str(sequence % PARTITIONS)
            batch.setdefault(part_id, []).append({
                "event_id": "live-%08d" % sequence, "part_id": part_id,
                "partition_key": self.keys[part_id][sequence % 8], "ts_ns": time.time_ns(),
                "schema_key": "metric_sample_v1", "payload": self.maker.payload(sequence, sequence % 8, 0.0)})
        for part_id, events in batch.items():
            answers = append_stream(self.lab, part_id, events)
            self.refused += sum(1 for a in answers if a.get("status") != "Healthy")
            self.sent += len(events)
            append_stream(self.reference, part_id, events)


class LagSampler(Every50ms):
    """Highest apply_lag_ms over the partitions, sampled every 50 ms with wall-clock times."""

    def __init__(self, lab):
        super().__init__()
        self.lab = lab
        self.samples = []

    def tick(self):
        status, _headers, body = self.lab.request("GET", "/readyz", role="observer")
        if status in (200, 503) and isinstance(body, dict):
            lags = [p["metrics"].get("apply_lag_ms", 0) for p in body.get("partitions", {}).values()]
            self.samples.append((time.time(), max(lags or [0])))

    def p99_between(self, start, end):
        lags = sorted(lag for ts, lag in self.samples if start <= ts <= end)
        assert lags, "no apply-lag sample during the replay"
        return lags[min(len(lags) - 1, int(0.99 * len(lags)))], len(lags)


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


def config_of(lab):
    return lab_get(lab, "/v1/config")


def v2_metrics(lab):
    """{part_id: exported V+1 metrics} after everything committed was applied and compacted."""
    wait_applied(lab)
    status, _headers, body = lab.request("POST", "/v1/test/compact", {})
    assert status == 200, body
    return {str(p): lab_get(lab, "/v1/test/metrics-snapshot?part_id=%d" % p)["metrics"] for p in range(PARTITIONS)}


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
