"""Helpers of the policy-deployment tests (scenario_policy): a lab on policy V whose latest full
checkpoint precedes its live traffic, a reference lab on V+1 from the start, the archive of
history the lab never saw, live V-shaped traffic mirrored to the reference, and the V+1
metrics both export."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time

from ceptra_lab import traffic
from ceptra_lab.testing import LabProcess, append_stream

from .runbook_support.labs import lab_get, wait_applied

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "policy")
V1, V2 = os.path.join(DATA, "policy_v1.yaml"), os.path.join(DATA, "policy_v2.yaml")
DAY_MS = 86400000
PARTITIONS = 2
HISTORY_EVENTS = 1500                     # per partition, 20 .. 10 days old
LAB_CONFIG = {"compacted_retention_ms": 40 * DAY_MS, "checkpoint_full_interval_ms": 300000}


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


def policy_lab(shadow_warmup_ms=1000, **lab_options):
    """A lab on policy V whose latest full checkpoint precedes its live traffic (``lab_options``:
    LabProcess's, e.g. ``tls_dir``)."""
    lab = start_lab(extra_args=["--shadow-warmup-ms", str(shadow_warmup_ms), "--apply-capacity", "6000"],
                    **lab_options)
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


def write_archive(path, now_ns, events=HISTORY_EVENTS):
    """The history the lab never saw: ``events`` V+1-shaped events per partition, 20 .. 10 days
    old; returns the window [start, end) they span."""
    start_ns = now_ns - 20 * DAY_MS * 1_000_000
    step_ms = 10 * DAY_MS // events
    traffic.seed_history("sqlite:" + path, PARTITIONS, events, V2, start_ns=start_ns, step_ms=step_ms)
    return start_ns, start_ns + events * step_ms * 1_000_000


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


def config_of(lab):
    return lab_get(lab, "/v1/config")


def v2_metrics(lab):
    """{part_id: exported V+1 metrics} after everything committed was applied and compacted."""
    wait_applied(lab)
    status, _headers, body = lab.request("POST", "/v1/test/compact", {})
    assert status == 200, body
    return {str(p): lab_get(lab, "/v1/test/metrics-snapshot?part_id=%d" % p)["metrics"] for p in range(PARTITIONS)}
