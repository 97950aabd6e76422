"""Tests of the in-memory control plane itself (``test_support.control_plane``)."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError

from .test_support.control_plane import ControlPlane


def test_fake_raises_the_real_error_for_unexpected_statuses():
    cluster = ControlPlane()
    with pytest.raises(CeptraError) as caught:
        cluster.request("GET", "activation", params={"barrier_id": "nope"})
    assert caught.value.status == 404 and caught.value.route == "activation"
    assert "GET /v1/activate/nope failed with 404: no such barrier" in caught.value.message


def test_fake_upload_is_idempotent_and_marks_upgrade_false_bundles():
    cluster = ControlPlane()
    bundle = {"bundle": {"name": "b"}, "q": {"upgrade": False}}
    first = cluster.request("POST", "definitions", body=bundle).json
    second = cluster.request("POST", "definitions", body=bundle).json
    assert first == second
    assert list(cluster.bundles) == [first["bundle_id"]]
    assert cluster.bundles[first["bundle_id"]]["partitions"]["0"]["needs_replay"] is True


def test_calls_are_recorded_by_route_and_roles_are_enforced():
    cluster = ControlPlane(role="observer")
    cluster.get_json("test_metrics_snapshot", query={"part_id": "1"})
    assert cluster.calls[-1][:4] == ("GET", "test_metrics_snapshot", None, {"part_id": "1"})
    with pytest.raises(CeptraError) as caught:
        cluster.request("PATCH", "config", body={"pane_size_ms": 500})
    assert caught.value.status == 403 and "lacks role operator" in caught.value.message
    assert cluster.version == 1
