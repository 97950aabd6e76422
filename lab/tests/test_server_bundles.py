"""Definitions, lane budget, shadow warmup, activation barriers and upgrade:false replay, over HTTP."""
from __future__ import annotations

import copy
import glob
import json
import os

import pytest
import yaml

from ceptra_lab.testing import wait_for

BUNDLES = "/work/shared/reference/bundles"
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
