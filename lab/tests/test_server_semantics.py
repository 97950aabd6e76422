"""The five semantics of contract section 5, through HTTP, plus ingress gate and fault hooks."""
from __future__ import annotations

import random
import re
import time

import pytest

from ceptra_lab.testing import append_stream, sample_event

HOUR_MS = 3600000


@pytest.fixture(scope="module")
def lab2():
    """A 2-partition test-mode lab with no bundle (one metric per payload.metric)."""
    from ceptra_lab.testing import LabProcess
    with LabProcess(partitions=2, test_mode=True) as process:
        yield process


def snapshot(lab, part_id):
    status, _, body = lab.request("GET", f"/v1/test/metrics-snapshot?part_id={part_id}", role="observer")
    assert status == 200
    return body


def totals(snap, metric):
    """(count, sum) of a metric over both tiers of a snapshot."""
    count, total = 0, 0.0
    for tier in ("raw", "compacted"):
        for panes in snap["metrics"].get(metric, {}).get(tier, {}).values():
            for state in panes.values():
                count += state["count"]
                total += state.get("sum", 0.0)
    return count, total


def test_dedup_returns_prior_outcome(lab2):
    event = sample_event("dedup-1", part_id="0", metric="dedup_metric")
    first = append_stream(lab2, "0", [event])[0]
    before = snapshot(lab2, "0")
    again = append_stream(lab2, "0", [dict(event, payload={"metric": "dedup_metric", "labels": {}, "value": 99.0})])[0]
    assert first["status"] == again["status"] == "Healthy"
    assert again["duplicate"] is True and again["index"] == first["index"] and again["term"] == first["term"]
    after = snapshot(lab2, "0")
    assert after["digest"] == before["digest"] and totals(after, "dedup_metric") == (1, 1.0)


def test_replay_session_drops_repeated_seq(lab2):
    session = "run-1/1"
    events = [sample_event(f"rs-{seq}", part_id="1", metric="replay_metric", flags=["REPLAY"],
                           replay_session=session, replay_seq=seq) for seq in (1, 2, 3)]
    assert all(r["status"] == "Healthy" and not r.get("duplicate") for r in append_stream(lab2, "1", events))
    repeat = sample_event("rs-2-retry-new-id", part_id="1", metric="replay_metric", flags=["REPLAY"],
                          replay_session=session, replay_seq=2)
    response = append_stream(lab2, "1", [repeat])[0]
    assert response["status"] == "Healthy" and response["duplicate"] is True
    assert totals(snapshot(lab2, "1"), "replay_metric") == (3, 3.0)
    _, _, state = lab2.request("GET", "/v1/state", role="observer")
    assert state["partitions"][1]["replay_sessions"][session]["last_seq"] == 3


def test_late_events_dropped_then_land_after_raising_l_and_c(lab2):
    now = time.time_ns()
    metric = "late_metric"
    append_stream(lab2, "0", [sample_event("late-current", now, part_id="0", metric=metric)])
    old_ts = now - 2 * HOUR_MS * 1_000_000        # two hours back: beyond WM - C with C = 1 h
    late = [sample_event(f"late-a-{i}", old_ts + i * 1_000_000, part_id="0", metric=metric, value=2.0) for i in range(5)]
    assert all(r["status"] == "Healthy" for r in append_stream(lab2, "0", late))
    snap = snapshot(lab2, "0")
    assert totals(snap, metric) == (1, 1.0)
    assert snap["late"][metric]["FINALIZED"] == 5
    _, _, text = lab2.request("GET", "/metrics", role="observer")
    assert re.search(r'ap_late_events_total\{part_id="0",metric="late_metric",reason="FINALIZED"\} 5', text)

    status, _, patched = lab2.request("PATCH", "/v1/config", {"metrics": {metric: {
        "lateness_allowance_ms": 4 * HOUR_MS, "correction_horizon_ms": 3 * HOUR_MS}}}, role="operator")
    assert status == 200 and f"metrics.{metric}.correction_horizon_ms" in patched["changed_keys"]
    again = [dict(event, event_id=event["event_id"].replace("late-a", "late-b")) for event in late]
    assert all(r["status"] == "Healthy" for r in append_stream(lab2, "0", again))
    snap = snapshot(lab2, "0")
    assert totals(snap, metric) == (6, 11.0)
    assert snap["late"][metric]["FINALIZED"] == 5          # nothing new dropped
    lab2.request("PATCH", "/v1/config", {"metrics": {metric: None}}, role="operator")


def test_compaction_keeps_totals(lab2):
    now = time.time_ns()
    metric = "compact_metric"
    events = [sample_event(f"cmp-{i}", now - (600 - i) * 1_000_000_000, part_id="1", metric=metric, value=0.1 * i)
              for i in range(40)]
    append_stream(lab2, "1", events)
    before = snapshot(lab2, "1")
    count_before, sum_before = totals(before, metric)
    assert count_before == 40
    lab2.request("PATCH", "/v1/config", {"raw_retention_ms": 60000}, role="operator")
    status, _, result = lab2.request("POST", "/v1/test/compact", {"part_id": "1"})
    assert status == 200 and result["compacted"]["1"]["folded_panes"] > 0
    after = snapshot(lab2, "1")
    assert after["metrics"][metric]["compacted"], "panes older than raw_retention_ms fold into the compacted tier"
    assert totals(after, metric) == (count_before, sum_before)
    lab2.request("PATCH", "/v1/config", {"raw_retention_ms": 86400000}, role="operator")
    _, _, text = lab2.request("GET", "/metrics", role="observer")
    assert re.search(r"^ceptra_compaction_runs_total [1-9]", text, re.M)


def test_order_permuted_event_set_gives_identical_digest(lab_factory):
    lab = lab_factory(partitions=2)
    now = time.time_ns()
    values = [0.1, 1e16, -1e16, 3.3, 1e-9, 7.0, -0.0, 2.5e-300, 12345.678, 0.2]
    events = [sample_event(f"perm-{i}", now - i * 7_000_000, metric="perm_metric", value=values[i % len(values)],
                           labels={"lane": f"l{i % 3}"}, partition_key=f"k{i}") for i in range(60)]
    shuffled = list(events)
    random.Random(5).shuffle(shuffled)
    append_stream(lab, "0", [dict(e, part_id="0") for e in events])
    append_stream(lab, "1", [dict(e, part_id="1") for e in shuffled])
    first, second = snapshot(lab, "0"), snapshot(lab, "1")
    assert totals(first, "perm_metric")[0] == 60
    assert first["metrics"] == second["metrics"]
    assert first["digest"] == second["digest"]


def test_wipe_enters_warmup_until_gate_opens(lab_factory):
    lab = lab_factory(partitions=2)
    append_stream(lab, "1", [sample_event("pre-wipe", part_id="1")])
    status, _, wiped = lab.request("POST", "/v1/test/wipe", {"part_id": "1"})
    assert status == 200 and wiped["manifest"]["ingress_gate"] == "warmup" and wiped["manifest"]["commit_index"] == 0
    live, replay = append_stream(lab, "1", [sample_event("live-1", part_id="1"),
                                            sample_event("hist-1", part_id="1", flags=["REPLAY"])])
    assert live["status"] == "TransientBackpressure" and live["cep_status_reason"] == "TRANSIENT_WARMUP"
    assert replay["status"] == "Healthy"
    _, _, ready = lab.request("GET", "/readyz", role="observer")
    assert "warmup" in ready["partitions"]["1"]["reasons"]
    lab.request("PATCH", "/v1/config", {"partitions": {"1": {"ingress_gate": "open"}}}, role="operator")
    assert append_stream(lab, "1", [sample_event("live-2", part_id="1")])[0]["status"] == "Healthy"


def test_outage_fault_fences_and_records(lab_factory):
    lab = lab_factory(partitions=2)
    status, _, outage = lab.request("POST", "/v1/test/outage", {"part_ids": ["0"], "duration_ms": 60000})
    assert status == 200
    response = append_stream(lab, "0", [sample_event("fenced", part_id="0")])[0]
    assert response["status"] == "PermanentDurability" and response["cep_status_reason"] == "PERMANENT_DURABILITY"
    assert append_stream(lab, "1", [sample_event("open", part_id="1")])[0]["status"] == "Healthy"
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    assert state["partitions"][0]["unavailable_windows"] == [{"start_ts_ns": outage["start_ts_ns"],
                                                              "end_ts_ns": outage["end_ts_ns"]}]
    _, _, ready = lab.request("GET", "/readyz", role="observer")
    assert "durability_fence" in ready["partitions"]["0"]["reasons"]
    _, _, audit = lab.request("GET", "/v1/audit?kind=outage", role="observer")
    assert audit["records"][0]["actor"] == "spiffe://ceptra.lab/role/admin"


def test_not_leader_and_503_faults(lab_factory):
    lab = lab_factory(partitions=2)
    lab.request("POST", "/v1/test/faults", {"part_id": "0", "not_leader": 2})
    responses = append_stream(lab, "0", [sample_event(f"nl-{i}", part_id="0") for i in range(3)])
    assert [r.get("cep_status_reason") for r in responses[:2]] == ["NOT_LEADER:ceptra-1"] * 2
    assert responses[2]["status"] == "Healthy"
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    assert state["partitions"][0]["leader"] == "ceptra-1" and state["partitions"][0]["routing_epoch"] == 2
    lab.request("POST", "/v1/test/faults", {"http_503_ratio": 1.0})
    status, _, body = lab.request("GET", "/v1/state", role="observer")
    assert status == 503 and body["status"] == 503
    assert lab.request("GET", "/healthz", role=None)[0] == 200
    assert lab.request("POST", "/v1/test/faults", {"http_503_ratio": 0.0})[0] == 200
    assert lab.request("GET", "/v1/state", role="observer")[0] == 200


def test_idempotency_key_returns_first_response(lab_factory):
    lab = lab_factory(partitions=1)
    headers = {"Idempotency-Key": "k-1"}
    first = lab.request("PATCH", "/v1/config", {"pane_size_ms": 500}, role="operator", headers=headers)
    lab.request("PATCH", "/v1/config", {"pane_size_ms": 250}, role="operator")
    second = lab.request("PATCH", "/v1/config", {"pane_size_ms": 500}, role="operator", headers=headers)
    assert first[0] == second[0] == 200 and first[2] == second[2]
    _, _, config = lab.request("GET", "/v1/config", role="observer")
    assert config["config"]["pane_size_ms"] == 250      # the repeat did not act again
    _, _, audit = lab.request("GET", "/v1/audit?kind=config_change", role="observer")
    assert len(audit["records"]) == 2
