"""Unit tests of the metrics_snapshot module (fake control plane, real AnsibleModule)."""

import json

from ansible_collections.ceptra.backfill.plugins.modules import metrics_snapshot

from ..test_support.control_plane import ControlPlane
from ..test_support.control_plane import plane_with_snapshots as cluster_with
from ..test_support.control_plane import snapshot


def test_metrics_snapshot_saves_once_and_respects_check_mode(tmp_path, run_module):
    cluster = cluster_with([1.0, 1.0])
    dest = tmp_path / "snap.json"
    args = {"dest": str(dest)}
    failed, check = run_module(metrics_snapshot, args, cluster, check_mode=True)
    assert not failed and check["changed"] is True and not dest.exists()
    assert check["diff"]["after"]["digests"] == {"0": "sha256:same", "1": "sha256:same"}
    failed, real = run_module(metrics_snapshot, args, cluster)
    assert not failed and real["changed"] is True
    saved = json.loads(dest.read_text())
    assert saved["snapshots"]["1"] == snapshot("1")
    assert real["snapshots"]["0"]["part_id"] == "0" and real["applied_index"] == {"0": 7, "1": 7}
    failed, again = run_module(metrics_snapshot, args, cluster)
    assert not failed and again["changed"] is False
    cluster.snapshots["1"] = snapshot("1", 2.0, "sha256:new")
    failed, changed = run_module(metrics_snapshot, args, cluster)
    assert changed["changed"] is True and changed["diff"]["before"]["digests"]["1"] == "sha256:same"
    assert json.loads(dest.read_text())["snapshots"]["1"]["digest"] == "sha256:new"


def test_metrics_snapshot_selected_partitions_without_bodies(run_module):
    cluster = cluster_with([1.0, 2.0, 3.0])
    failed, result = run_module(metrics_snapshot, {"part_ids": ["2"], "return_snapshots": False}, cluster)
    assert not failed and result["digests"] == {"2": "sha256:same"} and "snapshots" not in result


def test_metrics_snapshot_outside_test_mode(run_module):
    failed, result = run_module(metrics_snapshot, {}, ControlPlane(test_mode=False))
    assert failed and "not in test mode" in result["msg"]


def test_metrics_snapshot_missing_directory(tmp_path, run_module):
    failed, result = run_module(metrics_snapshot, {"dest": str(tmp_path / "no" / "s.json")}, cluster_with([1.0]))
    assert failed and "does not exist" in result["msg"]
