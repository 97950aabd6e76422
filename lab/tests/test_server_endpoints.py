"""Every endpoint of the contract answers with the contract's shapes."""
from __future__ import annotations

import os
import re
import time

from ceptra_lab.cluster import fnv1a_64
from ceptra_lab.testing import append_stream, sample_event, wait_for

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
BUNDLE = os.path.join(SHARED, "reference/bundles/gaming_cheat_detection.yaml")


def upload(lab, path=BUNDLE):
    with open(path, "rb") as handle:
        return lab.request("POST", "/v1/definitions", data=handle.read(), role="operator",
                           headers={"Content-Type": "application/yaml"})


def test_healthz_needs_no_identity(lab):
    status, _, body = lab.request("GET", "/healthz", role=None)
    assert status == 200 and body["status"] == "ok"


def test_readyz_spec_shape(lab):
    status, _, body = lab.request("GET", "/readyz", role="observer")
    assert status in (200, 503)
    for key in ("definition_bundle_id", "activation_barrier_id", "shadow_apply_state", "warmup_ready_ratio",
                "partition_ready_ratio", "readiness_digest", "ready", "threshold", "reasons", "partitions"):
        assert key in body
    assert body["readiness_digest"].startswith("sha256:")
    assert set(body["partitions"]) == {"0", "1", "2", "3"}
    assert set(body["partitions"]["0"]["metrics"]) >= {"apply_lag_ms", "replication_lag_ms"}
    assert isinstance(body["threshold"]["healthy_partition_ratio"], float)
    assert (status == 200) == body["ready"]


def test_state_manifest_shape(lab):
    status, _, body = lab.request("GET", "/v1/state", role="observer")
    assert status == 200
    assert body["cluster"]["partitions"] == 4 and body["cluster"]["test_mode"] is True
    part = body["partitions"][0]
    for key in ("part_id", "leader", "routing_epoch", "commit_index", "applied_index", "wal_first_index",
                "wal_last_index", "checkpoint", "def_version", "policy_version", "warmup", "ingress_gate",
                "finalized_horizon_index", "finalized_horizon_ts_ns", "dedup", "replay_sessions", "unavailable_windows"):
        assert key in part, key
    assert set(part["checkpoint"]) >= {"full_index", "age_ms"}
    assert set(part["dedup"]) >= {"capacity", "occupancy"}


def test_metrics_exposition_names(lab):
    append_stream(lab, "0", [sample_event("metrics-1", part_id="0")])
    status, headers, text = lab.request("GET", "/metrics", role="observer")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for name in ("apply_lag_ms", "replication_lag_ms", "ceptra_definition_warmup_pending", "ceptra_finalized_horizon_stall",
                 "compaction_duration_ms", "ceptra_compaction_runs_total", "ceptra_partition_ready",
                 "ceptra_ready_partitions_ratio", "ceptra_dedup_occupancy", "ceptra_dedup_capacity_exhausted_total",
                 "queue_depth", "config_version_current", "ceptra_applied_events_total", "ceptra_appended_events_total"):
        assert re.search(rf"^{name}(\{{| )", text, re.M), name
    assert 'queue_depth{part_id="0",type="commit_apply"}' in text
    assert re.search(r'^ceptra_applied_events_total\{part_id="0"\} [1-9]', text, re.M)


def test_config_get_has_etag_and_defaults(lab):
    status, headers, body = lab.request("GET", "/v1/config", role="observer")
    assert status == 200
    assert headers["ETag"] == f'"{body["version"]}"'
    config = body["config"]
    assert config["lateness_allowance_ms"] == 2000 and config["partition_flow"]["max_event_bytes"] == 1048576
    assert config["readiness"] == {"healthy_partition_ratio": 0.99, "apply_lag_ms": 200, "replication_lag_ms": 250}


def test_config_patch_deep_merge_and_noop(lab):
    _, _, before = lab.request("GET", "/v1/config", role="observer")
    patch = {"annotations": {"ledger": {"a": 1}}, "readiness": {"apply_lag_ms": 300}}
    status, headers, body = lab.request("PATCH", "/v1/config", patch, role="operator",
                                        headers={"If-Match": f'"{before["version"]}"'})
    assert status == 200, body
    assert body["version"] == before["version"] + 1 and body["previous_version"] == before["version"]
    assert body["impact"] == "hot" and body["changed_keys"] == ["annotations.ledger.a", "readiness.apply_lag_ms"]
    assert headers["ETag"] == f'"{body["version"]}"'
    _, _, after = lab.request("GET", "/v1/config", role="observer")
    assert after["config"]["readiness"]["healthy_partition_ratio"] == 0.99   # deep merge kept the sibling
    status, _, again = lab.request("PATCH", "/v1/config", patch, role="operator")
    assert status == 200 and again["version"] == body["version"] and again["changed_keys"] == []
    status, _, removed = lab.request("PATCH", "/v1/config", {"annotations": {"ledger": None},
                                                             "readiness": {"apply_lag_ms": 200}}, role="operator")
    assert status == 200 and "annotations.ledger.a" in removed["changed_keys"]


def test_config_if_match_conflict_and_rollback(lab):
    _, _, current = lab.request("GET", "/v1/config", role="observer")
    status, _, body = lab.request("PATCH", "/v1/config", {"pane_size_ms": 500}, role="operator",
                                  headers={"If-Match": f'"{current["version"] - 1}"'})
    assert status == 412 and body["status"] == 412 and "error" in body
    status, _, changed = lab.request("PATCH", "/v1/config", {"pane_size_ms": 500}, role="operator")
    assert status == 200
    status, _, rolled = lab.request("POST", f"/v1/config/rollback?to={current['version']}", role="operator")
    assert status == 200 and rolled["version"] == changed["version"] + 1 and rolled["changed_keys"] == ["pane_size_ms"]
    _, _, now = lab.request("GET", "/v1/config", role="observer")
    assert now["config"]["pane_size_ms"] == current["config"]["pane_size_ms"]
    status, _, body = lab.request("POST", f"/v1/config/rollback?to={now['version']}", role="operator")
    assert status == 409 and body["status"] == 409


def test_config_validation_422(lab):
    cases = [({"checkpoint_full_interval_ms": 1000}, "checkpoint_full_interval_ms"),
             ({"partition_flow": {"max_event_bytes": 10}}, "partition_flow.max_event_bytes"),
             ({"surprise": True}, "surprise"),
             ({"partitions": {"9": {"ingress_gate": "open"}}}, "partitions.9"),
             ({"partitions": {"0": {"ingress_gate": "ajar"}}}, "partitions.0.ingress_gate"),
             ({"lateness_allowance_ms": "soon"}, "lateness_allowance_ms")]
    _, _, before = lab.request("GET", "/v1/config", role="observer")
    for patch, path in cases:
        status, _, body = lab.request("PATCH", "/v1/config", patch, role="operator")
        assert status == 422, (patch, body)
        assert body["status"] == 422 and any(v["path"] == path for v in body["violations"]), body
    _, _, after = lab.request("GET", "/v1/config", role="observer")
    assert after["version"] == before["version"]


def test_definitions_upload_is_idempotent_and_get_shape(lab):
    status, _, first = upload(lab)
    assert status == 200 and first["state"] in ("distributed", "active") and first["bundle_id"].startswith(
        "gaming_liveops_cheat_detection@")
    status, _, second = upload(lab)
    assert status == 200 and second["bundle_id"] == first["bundle_id"] and second["created"] is False
    status, _, document = lab.request("GET", "/v1/definitions", role="observer")
    assert status == 200 and "active" in document
    bundle = next(b for b in document["bundles"] if b["bundle_id"] == first["bundle_id"])
    assert set(bundle["partitions"]) == {"0", "1", "2", "3"}
    shadow = bundle["partitions"]["0"]
    assert set(shadow) >= {"shadow_apply_state", "cep_shadow_state", "needs_replay", "warmup_ready_ratio"}
    _, _, audit = lab.request("GET", "/v1/audit?kind=bundle_upload", role="observer")
    assert sum(1 for r in audit["records"] if r["details"]["bundle_id"] == first["bundle_id"]) == 1


def test_activation_commits_after_warmup(lab):
    _, _, uploaded = upload(lab)
    status, _, barrier = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"],
                                                              "readiness_threshold": 1.0}, role="operator")
    assert status == 200 and set(barrier) >= {"barrier_id", "state", "missing_partitions", "barrier_index"}

    def committed():
        _, _, doc = lab.request("GET", f"/v1/activate/{barrier['barrier_id']}", role="observer")
        return doc if doc["state"] == "committed" else None
    doc = wait_for(committed, message="barrier commit")
    assert set(doc["barrier_index"]) == {"0", "1", "2", "3"} and doc["missing_partitions"] == []
    _, _, definitions = lab.request("GET", "/v1/definitions", role="observer")
    assert definitions["active"]["bundle_id"] == uploaded["bundle_id"]
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    assert all(p["def_version"] == 1 for p in state["partitions"])
    _, _, audit = lab.request("GET", "/v1/audit?kind=activation_committed", role="observer")
    assert audit["records"][-1]["actor"] == "spiffe://ceptra.lab/role/operator"


def test_replay_job_completes(lab):
    append_stream(lab, "1", [sample_event(f"rj-{i}", part_id="1") for i in range(20)])
    status, _, job = lab.request("POST", "/v1/replay", {"part_ids": ["1"], "from": "latest_full_checkpoint",
                                                        "reason": "test"}, role="operator")
    assert status == 200 and job["state"] == "running"

    def done():
        _, _, doc = lab.request("GET", f"/v1/replay/{job['job_id']}", role="observer")
        return doc if doc["state"] == "completed" else None
    doc = wait_for(done, message="replay job")
    progress = doc["partitions"]["1"]
    assert progress["replayed_index"] == progress["to_index"] and progress["to_index"] >= 20


def test_audit_post_and_filters(lab):
    started = time.time()
    status, _, record = lab.request("POST", "/v1/audit", {"kind": "replay_batch", "details": {"events": 5}},
                                    role="operator")
    assert status == 201 and set(record) == {"id", "ts", "actor", "kind", "details"}
    status, _, body = lab.request("GET", f"/v1/audit?since={started - 1}&kind=replay_batch", role="observer")
    assert status == 200 and [r["id"] for r in body["records"]] == [record["id"]]
    _, _, none = lab.request("GET", f"/v1/audit?since={time.time() + 60}", role="observer")
    assert none["records"] == []


def test_append_routes_by_fnv_and_dedups(lab):
    event = sample_event("route-1", partition_key="player-17")
    expected = str(fnv1a_64(b"player-17") % 4)
    status, _, first = lab.request("POST", "/append", event, role="ingest")
    assert status == 200 and first["status"] == "Healthy" and isinstance(first["index"], int)
    _, _, state = lab.request("GET", "/v1/state", role="observer")
    part = next(p for p in state["partitions"] if p["part_id"] == expected)
    assert part["commit_index"] >= first["index"]
    status, _, second = lab.request("POST", "/append", event, role="ingest")
    assert second["duplicate"] is True and second["index"] == first["index"]


def test_append_stream_answers_each_line_in_order(lab):
    events = [sample_event(f"order-{i}", part_id="3") for i in range(50)]
    responses = append_stream(lab, "3", events)
    assert [r["event_id"] for r in responses] == [e["event_id"] for e in events]
    indexes = [r["index"] for r in responses]
    assert indexes == sorted(indexes) and len(set(indexes)) == 50


def test_metrics_snapshot_rpc(lab):
    status, _, snapshot = lab.request("GET", "/v1/test/metrics-snapshot?part_id=0", role="observer")
    assert status == 200 and snapshot["part_id"] == "0" and snapshot["digest"].startswith("sha256:")
    assert isinstance(snapshot["metrics"], dict) and "applied_index" in snapshot


def test_test_rpcs_compact_checkpoint_faults(lab):
    status, _, compacted = lab.request("POST", "/v1/test/compact", {"part_id": "0"})
    assert status == 200 and "0" in compacted["compacted"]
    status, _, checkpointed = lab.request("POST", "/v1/test/checkpoint", {})
    assert status == 200 and set(checkpointed["checkpointed"]) == {"0", "1", "2", "3"}
    status, _, faults = lab.request("GET", "/v1/test/faults")
    assert status == 200 and set(faults["partitions"]["0"]) >= {"apply_capacity", "replication_lag_ms", "shadow_state"}


def test_reference_dialect(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--dialect", "reference"])
    lab.request("POST", "/v1/test/faults", {"part_id": "1", "replication_lag_ms": 900})
    status, _, body = lab.request("GET", "/readyz", role="observer")
    assert status == 503 and isinstance(body["threshold"], float)
    assert isinstance(body["partitions"], list) and body["partitions"][1]["partition_id"] == "1"
    assert "replication_lag_exceeded" in body["partitions"][1]["reasons"]
    _, _, text = lab.request("GET", "/metrics", role="observer")
    assert 'replication_lag_seconds{partition_id="1"} 0.9' in text and "ceptra_partition_ready_ratio" in text


def test_append_accepts_reference_b64_wire(lab):
    import base64
    import json
    message = {"event_id": "b64-1", "partition_key_b64": base64.b64encode(b"player-17").decode(), "ts_ns": time.time_ns(),
               "schema_key": "metric_sample_v1",
               "payload_b64": base64.b64encode(json.dumps({"metric": "m", "value": 2.0}).encode()).decode()}
    status, _, body = lab.request("POST", "/append", message, role="ingest")
    assert status == 200 and body["status"] == "Healthy"
    status, _, body = lab.request("POST", "/append", dict(message, event_id="b64-2", partition_key_b64="%%"), role="ingest")
    assert body["status"] == "PermanentDurability" and body["cep_status_reason"] == "PERMANENT_PAYLOAD"
