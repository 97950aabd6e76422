"""The tolerant /readyz reader over the spec shape and every variant of contract section 2."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import (
    describe_not_ready, fetch_readiness, normalize_readiness)

from ..test_support.http_server import FakeServer, Reply

SPEC = {
    "definition_bundle_id": "gaming@abc", "activation_barrier_id": None, "shadow_apply_state": "Ready",
    "warmup_ready_ratio": 1.0, "partition_ready_ratio": 0.5, "readiness_digest": "sha256:00",
    "ready": False, "threshold": {"healthy_partition_ratio": 0.99},
    "reasons": ["insufficient_healthy_partitions"],
    "partitions": {
        "0": {"ready": True, "reasons": [], "metrics": {"apply_lag_ms": 10, "replication_lag_ms": 5}},
        "1": {"ready": False, "reasons": ["warmup", "apply_lag"], "metrics": {"apply_lag_ms": 340, "replication_lag_ms": 45}},
    },
    "some_future_field": {"x": [1, 2]},
}

REFERENCE = {
    "ready": False, "threshold": 0.75, "reasons": [],
    "partitions": [
        {"partition_id": 0, "ready": True, "critical": False, "reasons": []},
        {"partition_id": 1, "ready": False, "critical": True,
         "reasons": ["apply_lag_exceeded", "replication_lag_exceeded", "checkpoint_age_exceeded",
                     "certificate_expiring", "warmup_pending"], "apply_lag_seconds": 0.5},
    ],
}

CLUSTOR = {
    "readiness": [
        {"partition_id": "p0", "shadow_apply_state": "Ready", "warmup_ready_ratio": 1.0, "extra": "?"},
        {"partition_id": "p1", "shadow_apply_state": "Replaying", "warmup_ready_ratio": 0.4},
    ],
}


def test_spec_shape():
    doc = normalize_readiness(SPEC, 503)
    assert doc["ready"] is False and doc["http_status"] == 503
    assert doc["definition_bundle_id"] == "gaming@abc"
    assert doc["threshold"] == {"healthy_partition_ratio": 0.99}
    assert doc["reasons"] == ["insufficient_healthy_partitions"]
    assert doc["not_ready_partitions"] == ["1"]
    assert doc["partitions"]["1"]["reasons"] == ["warmup", "apply_lag"]
    assert doc["partitions"]["1"]["metrics"] == {"apply_lag_ms": 340, "replication_lag_ms": 45}
    assert "some_future_field" not in doc


def test_reference_variant_array_bare_threshold_and_reason_names():
    doc = normalize_readiness(REFERENCE, 503)
    assert doc["threshold"] == {"healthy_partition_ratio": 0.75}
    assert list(doc["partitions"]) == ["0", "1"]
    one = doc["partitions"]["1"]
    assert one["reasons"] == ["apply_lag", "replication_lag", "checkpoint_age", "cert_expiry", "warmup"]
    assert one["critical"] is True and one["ready"] is False
    assert one["metrics"] == {"apply_lag_ms": pytest.approx(500.0)}
    assert doc["partition_ready_ratio"] == 0.5


def test_clustor_readiness_list():
    doc = normalize_readiness(CLUSTOR, 200)
    assert doc["partitions"]["p0"]["ready"] is True
    p1 = doc["partitions"]["p1"]
    assert p1["ready"] is False and p1["reasons"] == ["definition_warmup_pending"]
    assert p1["shadow_apply_state"] == "Replaying" and p1["warmup_ready_ratio"] == 0.4
    # no top-level "ready": derived from the ratio against the default threshold
    assert doc["ready"] is False and doc["partition_ready_ratio"] == 0.5


def test_clustor_list_merged_with_partitions():
    body = dict(SPEC, readiness=[{"partition_id": "0", "shadow_apply_state": "Pending", "warmup_ready_ratio": 0.1}])
    doc = normalize_readiness(body, 503)
    assert doc["partitions"]["0"]["ready"] is False
    assert doc["partitions"]["0"]["reasons"] == ["definition_warmup_pending"]


def test_bundle_and_barrier_ids_are_carried_through():
    spec = normalize_readiness(dict(SPEC, activation_barrier_id="barrier-7"), 503)
    assert spec["definition_bundle_id"] == "gaming@abc" and spec["activation_barrier_id"] == "barrier-7"
    # reference implementation: the barrier as an object next to the Clustor readiness list
    # (shape of reference/bundles/gaming_activation_ready.json), the bundle as bundle_id
    reference = dict(CLUSTOR, bundle_id="gaming@def",
                     barrier={"barrier_id": "gaming-activate-v2", "bundle_id": "gaming@def", "readiness_threshold": 0.99})
    doc = normalize_readiness(reference, 503)
    assert doc["activation_barrier_id"] == "gaming-activate-v2" and doc["definition_bundle_id"] == "gaming@def"
    assert normalize_readiness({"barrier_id": "b-2"})["activation_barrier_id"] == "b-2"
    assert normalize_readiness({"barrier": "b-3"})["activation_barrier_id"] == "b-3"
    # the spec field wins over variants; no barrier at all is None
    assert normalize_readiness({"activation_barrier_id": "b-1", "barrier_id": "b-2"})["activation_barrier_id"] == "b-1"
    assert normalize_readiness({"barrier": ["odd"]})["activation_barrier_id"] is None
    assert normalize_readiness(CLUSTOR)["activation_barrier_id"] is None


@pytest.mark.parametrize("body", [
    {}, None, [], "text", {"partitions": "weird"}, {"partitions": [1, None, "x"]},
    {"partitions": {"0": True, "1": None}}, {"threshold": "abc", "reasons": "warmup"},
    {"partitions": [{"id": 7, "reasons": [{"reason": "WARMUP_PENDING"}, {"code": "apply_lag"}, None, 5]}]},
    {"ready": "yes", "partition_ready_ratio": "0.5", "warmup_ready_ratio": {}},
])
def test_never_crashes_on_odd_bodies(body):
    doc = normalize_readiness(body, 200)
    assert isinstance(doc["ready"], bool)
    assert isinstance(doc["partitions"], dict)
    describe_not_ready(doc)


def test_reason_objects_and_case_are_normalized():
    doc = normalize_readiness({"partitions": [{"id": 7, "reasons": [{"reason": "WARMUP_PENDING"}, {"code": "apply_lag"}]}]})
    assert doc["partitions"]["7"]["reasons"] == ["warmup", "apply_lag"]
    assert doc["partitions"]["7"]["ready"] is False


def test_partitions_sorted_numerically():
    body = {"ready": True, "partitions": {str(n): {"ready": True} for n in (10, 2, 1)}}
    assert list(normalize_readiness(body)["partitions"]) == ["1", "2", "10"]


def test_describe_not_ready_names_partitions_reasons_and_lag():
    doc = normalize_readiness(SPEC, 503)
    text = describe_not_ready(doc)
    assert "partition 1: warmup, apply_lag (apply_lag_ms=340, replication_lag_ms=45)" in text
    assert "cluster: insufficient_healthy_partitions" in text
    assert describe_not_ready(doc, ["0", "9"]) == "partition 9: not reported by /readyz"


def test_fetch_accepts_503_readiness_and_retries_503_errors():
    server = FakeServer()
    try:
        server.on("GET", "/readyz", [Reply(503, {"error": "injected fault", "status": 503}), Reply(503, SPEC)])
        client = CeptraClient(server.url, retries=3)
        client.sleep = lambda s: None
        doc = fetch_readiness(client)
        assert doc["ready"] is False and doc["http_status"] == 503
        assert len(server.calls()) == 2
        server.on("GET", "/readyz", Reply(503, {"error": "overloaded", "status": 503}))
        with pytest.raises(CeptraError) as info:
            fetch_readiness(client)
        assert "overloaded" in info.value.message and "gave up after 4 attempts" in info.value.message
    finally:
        server.close()


def test_partition_lags_for_the_throttle():
    from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import partition_lags

    server = FakeServer()
    try:
        server.on("GET", "/readyz", Reply(503, REFERENCE))
        lags = partition_lags(CeptraClient(server.url))
        assert lags == {"0": (None, None), "1": (pytest.approx(500.0), None)}
        server.on("GET", "/readyz", Reply(503, SPEC))
        assert partition_lags(CeptraClient(server.url)) == {"0": (10, 5), "1": (340, 45)}
    finally:
        server.close()
