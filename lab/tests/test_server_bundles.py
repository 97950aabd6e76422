"""Definitions, lane budget, shadow warmup, activation barriers and upgrade:false replay, over HTTP."""
from __future__ import annotations

import copy
import glob
import json
import os

import pytest
import yaml

from ceptra_lab.testing import append_stream, sample_event, wait_for

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
BUNDLES = os.path.join(SHARED, "reference/bundles")
GAMING = os.path.join(BUNDLES, "gaming_cheat_detection.yaml")


def gaming(def_version=2, player_lanes=32, upgrade=True):
    with open(GAMING, encoding="utf-8") as handle:
        bundle = yaml.safe_load(handle)
    bundle = copy.deepcopy(bundle)
    bundle["bundle"]["def_version"] = def_version
    bundle["bundle"]["lane_domains"]["player_id"]["max_per_partition"] = player_lanes
    if not upgrade:
        queries = bundle["workflow"]["phases"][1]["options"]["queries"]
        queries["anti_cheat_flags"]["upgrade"] = False
    return bundle


def post_bundle(lab, bundle, path="/v1/definitions"):
    return lab.request("POST", path, data=json.dumps(bundle).encode(), role="operator",
                       headers={"Content-Type": "application/json"})


def barrier(lab, barrier_id):
    return lab.request("GET", f"/v1/activate/{barrier_id}", role="observer")[2]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(BUNDLES, "*.yaml"))), ids=os.path.basename)
def test_reference_bundles_validate_or_422_with_diagnostic(lab, path):
    with open(path, "rb") as handle:
        status, _, body = lab.request("POST", "/v1/definitions/validate", data=handle.read(), role="operator",
                                      headers={"Content-Type": "application/yaml"})
    assert status in (200, 422), body
    if status == 200:
        assert body["bundle_name"] and body["compiled_queries"]
        assert all(p["projected_lanes"] <= 64 for p in body["lane_report"]["projections"])
        assert set(body["compiled_queries"][0]) >= {"phase", "metric", "aggregator", "labels", "range_ms"}
    else:
        assert body["status"] == 422 and body["violations"] and all(v["message"] for v in body["violations"])
    # which ones pass is fixed by the reference data: name it so a regression is visible
    valid = {"gaming_cheat_detection.yaml", "supply_chain_workflow.yaml"}
    assert (status == 200) == (os.path.basename(path) in valid)


def test_bundle_over_64_lanes_is_rejected(lab):
    for path in ("/v1/definitions/validate", "/v1/definitions"):
        status, _, body = post_bundle(lab, gaming(player_lanes=65), path)
        assert status == 422 and any("64" in v["message"] for v in body["violations"]), body
    status, _, body = post_bundle(lab, gaming(player_lanes=50), "/v1/definitions/validate")
    assert status == 200 and body["warnings"]


def test_lane_budget_patch_checked_against_active_bundle(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    _, _, uploaded = post_bundle(lab, gaming(def_version=3))
    activation = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")[2]
    wait_for(lambda: barrier(lab, activation["barrier_id"])["state"] == "committed", message="commit")
    status, _, body = lab.request("PATCH", "/v1/config", {"lane_domains": {"player_id": {"max_per_partition": 80}}},
                                  role="operator")
    assert status == 422 and body["violations"][0]["path"].startswith("lane_domains")
    status, _, body = lab.request("PATCH", "/v1/config", {"lane_domains": {"player_id": {"max_per_partition": 50}}},
                                  role="operator")
    assert status == 200 and body["warnings"]


def test_shadow_failure_blocks_barrier_until_excluded(lab_factory):
    lab = lab_factory(partitions=4, extra_args=["--shadow-warmup-ms", "50"])
    lab.request("POST", "/v1/test/faults", {"part_id": "1", "shadow_state": "SHADOW_FAILED"})
    _, _, uploaded = post_bundle(lab, gaming(def_version=4))
    _, _, pending = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"], "readiness_threshold": 0.5},
                                role="operator")
    wait_for(lambda: barrier(lab, pending["barrier_id"])["missing_partitions"] == ["1"], message="others ready")
    doc = barrier(lab, pending["barrier_id"])
    assert doc["state"] == "pending" and doc["blocked_partitions"] == ["1"]
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    assert definitions["bundles"][0]["partitions"]["1"]["cep_shadow_state"] == "SHADOW_FAILED"
    status, _, updated = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"], "readiness_threshold": 0.5,
                                                              "exclude_partitions": ["1"]}, role="operator")
    assert status == 200 and updated["barrier_id"] == pending["barrier_id"]
    assert updated["state"] == "committed" and set(updated["barrier_index"]) == {"0", "2", "3"}


def test_abort_pending_barrier(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    lab.request("POST", "/v1/test/faults", {"shadow_state": "SHADOW_TIMEOUT"})
    _, _, uploaded = post_bundle(lab, gaming(def_version=5))
    _, _, pending = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")
    assert pending["state"] == "pending"
    _, _, aborted = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"], "abort": True},
                                role="operator")
    assert aborted["state"] == "aborted" and barrier(lab, pending["barrier_id"])["state"] == "aborted"
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    assert definitions["active"] is None


def test_upgrade_false_needs_wal_replay_before_activation(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    _, _, uploaded = post_bundle(lab, gaming(def_version=6, upgrade=False))
    assert uploaded["needs_replay"] is True
    _, _, pending = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    shadow = definitions["bundles"][0]["partitions"]["0"]
    assert shadow["cep_shadow_state"] == "SHADOW_WAITING_FOR_WAL" and shadow["needs_replay"] is True
    _, _, ready = lab.request("GET", "/readyz", role="observer")
    assert "definition_warmup_pending" in ready["partitions"]["0"]["reasons"]
    assert barrier(lab, pending["barrier_id"])["state"] == "pending"
    _, _, job = lab.request("POST", "/v1/replay", {"part_ids": ["0", "1"], "reason": "upgrade false"}, role="operator")
    wait_for(lambda: barrier(lab, pending["barrier_id"])["state"] == "committed", message="commit after replay")
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    assert definitions["active"]["bundle_id"] == uploaded["bundle_id"]
    assert lab.request("GET", f"/v1/replay/{job['job_id']}", role="observer")[2]["state"] == "completed"
    kinds = [r["kind"] for r in lab.request("GET", "/v1/audit", role="observer")[2]["records"]]
    assert {"bundle_upload", "activation", "replay_job", "activation_committed"} <= set(kinds)


def test_definitions_list_compiled_queries_and_lane_domains(lab_factory):
    # the config manager checks a lane_domains override exactly from these two fields
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    bundle = gaming(def_version=7, player_lanes=40)
    _, _, report = post_bundle(lab, bundle, "/v1/definitions/validate")
    status, _, uploaded = post_bundle(lab, bundle)
    assert status == 200
    activation = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")[2]
    wait_for(lambda: barrier(lab, activation["barrier_id"])["state"] == "committed", message="commit")
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    assert definitions["active"]["bundle_id"] == uploaded["bundle_id"]
    entry = next(b for b in definitions["bundles"] if b["bundle_id"] == uploaded["bundle_id"])
    assert entry["lane_domains"] == {"player_id": 40}
    assert entry["compiled_queries"] == report["compiled_queries"]
    by_metric = {query["metric"]: query for query in entry["compiled_queries"]}
    assert set(by_metric) >= {"anti_cheat_flags", "headshot_ratio_short", "movement_anomaly_score",
                              "matchmaking_latency_p95", "anti_cheat_flag_baseline", "headshot_ratio_baseline"}
    assert by_metric["anti_cheat_flags"]["labels"] == ["player_id"]
    assert by_metric["anti_cheat_flags"]["source_metric"] == "anti_cheat_flags_total"
    assert by_metric["anti_cheat_flags"]["range_ms"] == 15000
    assert by_metric["matchmaking_latency_p95"]["labels"] == [] and by_metric["matchmaking_latency_p95"]["quantile"] == 0.95


def metric_value(text: str, name: str, part_id: str) -> float:
    prefix = f'{name}{{part_id="{part_id}"}} '
    return float(next(line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)))


def test_activation_barrier_is_commit_index_and_counts_no_event(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    append_stream(lab, "0", [sample_event(f"ba-{i}", part_id="0", partition_key=f"k-{i}") for i in range(7)])
    append_stream(lab, "1", [sample_event(f"bb-{i}", part_id="1", partition_key=f"k-{i}") for i in range(3)])

    def settled():
        parts = lab.request("GET", "/v1/state", role="observer")[2]["partitions"]
        return parts if all(p["applied_index"] == p["commit_index"] for p in parts) else None
    before = {p["part_id"]: p for p in wait_for(settled, message="events applied")}
    assert (before["0"]["commit_index"], before["1"]["commit_index"]) == (7, 3)
    _, _, uploaded = post_bundle(lab, gaming(def_version=8))
    activation = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")[2]
    wait_for(lambda: barrier(lab, activation["barrier_id"])["state"] == "committed", message="commit")
    # the barrier index is each partition's commit index at the switch ...
    assert barrier(lab, activation["barrier_id"])["barrier_index"] == {"0": 7, "1": 3}
    # ... and activation adds no WAL entry and counts no event
    after = {p["part_id"]: p for p in wait_for(settled, message="still settled")}
    for part_id in ("0", "1"):
        assert (after[part_id]["commit_index"], after[part_id]["applied_index"]) == \
               (before[part_id]["commit_index"], before[part_id]["applied_index"])
        assert after[part_id]["def_version"] == 8
    metrics = lab.request("GET", "/metrics", role="observer")[2]
    assert metric_value(metrics, "ceptra_appended_events_total", "0") == 7
    assert metric_value(metrics, "ceptra_applied_events_total", "0") == 7
    assert metric_value(metrics, "ceptra_applied_events_total", "1") == 3
    # the next event takes the index right after the barrier
    [response] = append_stream(lab, "0", [sample_event("ba-next", part_id="0", partition_key="k-next")])
    assert response["status"] == "Healthy" and response["index"] == 8
