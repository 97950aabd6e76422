"""Apply lag is real: appending faster than --apply-capacity drives apply_lag_ms up, slowing down clears it."""
from __future__ import annotations

import re

from ceptra_lab.testing import append_stream, sample_event, wait_for


def readiness(lab, part_id):
    return lab.request("GET", "/readyz", role="observer")[2]["partitions"][part_id]


def test_apply_lag_rises_above_200_ms_and_clears(lab_factory):
    lab = lab_factory(partitions=2, apply_capacity=500)
    responses = append_stream(lab, "0", [sample_event(f"lag-{i}", part_id="0") for i in range(1500)])
    assert all(r["status"] == "Healthy" for r in responses)
    lagging = wait_for(lambda: (lambda doc: doc if doc["metrics"]["apply_lag_ms"] > 200 else None)(readiness(lab, "0")),
                       message="apply_lag_ms > 200")
    assert "apply_lag" in lagging["reasons"] and lagging["ready"] is False
    _, _, text = lab.request("GET", "/metrics", role="observer")
    lag = float(re.search(r'^apply_lag_ms\{part_id="0"\} (\S+)', text, re.M).group(1))
    depth = int(re.search(r'^queue_depth\{part_id="0",type="commit_apply"\} (\d+)', text, re.M).group(1))
    assert lag > 200 and depth > 0
    assert "apply_lag" not in readiness(lab, "1")["reasons"]       # the idle partition is unaffected
    cleared = wait_for(lambda: (lambda doc: doc if "apply_lag" not in doc["reasons"] else None)(readiness(lab, "0")),
                       timeout=90, message="apply lag to clear")
    assert cleared["metrics"]["apply_lag_ms"] <= 200
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    wait_for(lambda: lab.request("GET", "/v1/state", role="observer")[2]["partitions"][0]["applied_index"] == 1500,
             timeout=60, message="everything applied")
    assert state["partitions"][0]["commit_index"] == 1500


def test_full_queue_answers_transient_backpressure_with_hints(lab_factory):
    lab = lab_factory(partitions=1, apply_capacity=100)
    lab.request("PATCH", "/v1/config", {"partition_flow": {"max_events": 200}}, role="operator")
    responses = append_stream(lab, "0", [sample_event(f"bp-{i}", part_id="0") for i in range(260)])
    refused = [r for r in responses if r["status"] == "TransientBackpressure"]
    assert refused, "a full commit->apply queue must push back"
    assert refused[0]["cep_status_reason"] == "TRANSIENT_BACKPRESSURE"
    assert refused[0]["cep_credit_hint"]["retry_backoff_ms"] > 0
    assert refused[0]["cep_credit_hint"]["client_window_size"] >= 1


def test_apply_capacity_fault_slows_one_partition(lab_factory):
    lab = lab_factory(partitions=2)
    status, _, faults = lab.request("POST", "/v1/test/faults", {"part_id": "1", "apply_capacity": 200})
    assert status == 200 and faults["partitions"]["1"]["apply_capacity"] == 200
    append_stream(lab, "1", [sample_event(f"slow-{i}", part_id="1") for i in range(800)])
    append_stream(lab, "0", [sample_event(f"fast-{i}", part_id="0") for i in range(800)])
    wait_for(lambda: "apply_lag" in readiness(lab, "1")["reasons"], message="slowed partition lags")
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    assert state["partitions"][0]["applied_index"] == 800          # unthrottled partitions apply inline
    lab.request("POST", "/v1/test/faults", {"part_id": "1", "apply_capacity": None})
    wait_for(lambda: lab.request("GET", "/v1/state", role="observer")[2]["partitions"][1]["applied_index"] == 800,
             message="lifted fault drains the queue")
