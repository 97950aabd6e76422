"""Unit tests of the activation and wal_replay modules (fake control plane, real AnsibleModule)."""

from ansible_collections.ceptra.backfill.plugins.modules import activation, wal_replay

from ..test_support.control_plane import (
    FAILED_SHADOW,
    READY_SHADOW,
    WAITING_SHADOW,
    ControlPlane,
)

FAST = {"wait_interval": 0, "wait_timeout": 5}


def test_activation_check_real_rerun(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1")
    args = dict(FAST, bundle_id="b@1")
    failed, check = run_module(activation, args, cluster, check_mode=True)
    assert not failed and check["changed"] is True and check["would_activate"] is True
    assert cluster.active is None
    failed, real = run_module(activation, args, cluster)
    assert not failed and real["changed"] is True and real["barrier"]["state"] == "committed"
    assert cluster.active == "b@1"
    failed, again = run_module(activation, args, cluster)
    assert not failed and again["changed"] is False


def test_activation_refuses_failed_partitions_then_commits_with_exclusion(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=FAILED_SHADOW)
    failed, result = run_module(activation, dict(FAST, bundle_id="b@1"), cluster)
    assert failed
    assert "1 (SHADOW_FAILED)" in result["msg"] and "exclude_partitions" in result["msg"] and "abort" in result["msg"]
    assert result["failed_partitions"] == ["1"]
    assert cluster.writes() == []
    args = dict(FAST, bundle_id="b@1", exclude_partitions=["1"])
    failed, result = run_module(activation, args, cluster)
    assert not failed and result["barrier"]["state"] == "committed" and result["targeted_partitions"] == ["0", "2", "3"]


def test_activation_threshold_is_checked(run_module):
    cluster = ControlPlane()
    failed, result = run_module(activation, dict(FAST, bundle_id="b@1", readiness_threshold=1.5), cluster)
    assert failed and "readiness_threshold must be above 0 and at most 1" in result["msg"]
    assert cluster.calls == []


def test_wal_replay_needs_replay_only_check_real_rerun(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p2=WAITING_SHADOW)
    args = dict(FAST, needs_replay_only=True)
    failed, check = run_module(wal_replay, args, cluster, check_mode=True)
    assert not failed and check["changed"] is True and check["would_start"] is True and check["part_ids"] == ["2"]
    assert cluster.jobs == {}
    failed, real = run_module(wal_replay, args, cluster)
    assert not failed and real["changed"] is True and real["state"] == "completed"
    assert real["partitions"]["2"]["replayed_index"] == 50
    failed, again = run_module(wal_replay, args, cluster)
    assert not failed and again["changed"] is False and again["part_ids"] == []


def test_wal_replay_without_part_ids_explains(run_module):
    failed, result = run_module(wal_replay, dict(FAST), ControlPlane())
    assert failed and "give part_ids, or needs_replay_only: true" in result["msg"]
