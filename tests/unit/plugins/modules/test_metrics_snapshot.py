"""Unit tests of the metrics_snapshot module (fake control plane, real AnsibleModule)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bundle import run_module  # noqa: E402  pylint: disable=wrong-import-position
from test_definitions_fake_cluster import FakeCluster  # noqa: E402

from ansible_collections.ceptra.backfill.plugins.modules import metrics_snapshot  # noqa: E402


def snapshot(part_id, value=1.0, digest="sha256:same"):
    return {"part_id": part_id, "applied_index": 7, "digest": digest,
            "metrics": {"m": {"raw": {"": {"1000": {"sum": value}}}, "compacted": {}}}, "late": {}}


def cluster_with(values):
    cluster = FakeCluster(partitions=len(values))
    for part_id, value in enumerate(values):
        cluster.snapshots[str(part_id)] = snapshot(str(part_id), value)
    return cluster


def test_metrics_snapshot_saves_once_and_respects_check_mode(tmp_path, capsys, monkeypatch):
    cluster = cluster_with([1.0, 1.0])
    dest = tmp_path / "snap.json"
    args = {"dest": str(dest)}
    failed, check = run_module(metrics_snapshot, args, cluster, capsys, monkeypatch, check_mode=True)
    assert not failed and check["changed"] is True and not dest.exists()
    assert check["diff"]["after"]["digests"] == {"0": "sha256:same", "1": "sha256:same"}
    failed, real = run_module(metrics_snapshot, args, cluster, capsys, monkeypatch)
    assert not failed and real["changed"] is True
    saved = json.loads(dest.read_text())
    assert saved["snapshots"]["1"] == snapshot("1")
    assert real["snapshots"]["0"]["part_id"] == "0" and real["applied_index"] == {"0": 7, "1": 7}
    failed, again = run_module(metrics_snapshot, args, cluster, capsys, monkeypatch)
    assert not failed and again["changed"] is False
    cluster.snapshots["1"] = snapshot("1", 2.0, "sha256:new")
    failed, changed = run_module(metrics_snapshot, args, cluster, capsys, monkeypatch)
    assert changed["changed"] is True and changed["diff"]["before"]["digests"]["1"] == "sha256:same"
    assert json.loads(dest.read_text())["snapshots"]["1"]["digest"] == "sha256:new"


def test_metrics_snapshot_selected_partitions_without_bodies(capsys, monkeypatch):
    cluster = cluster_with([1.0, 2.0, 3.0])
    failed, result = run_module(metrics_snapshot, {"part_ids": ["2"], "return_snapshots": False}, cluster, capsys,
                                monkeypatch)
    assert not failed and result["digests"] == {"2": "sha256:same"} and "snapshots" not in result


def test_metrics_snapshot_outside_test_mode(capsys, monkeypatch):
    failed, result = run_module(metrics_snapshot, {}, FakeCluster(test_mode=False), capsys, monkeypatch)
    assert failed and "not in test mode" in result["msg"]


def test_metrics_snapshot_missing_directory(tmp_path, capsys, monkeypatch):
    failed, result = run_module(metrics_snapshot, {"dest": str(tmp_path / "no" / "s.json")}, cluster_with([1.0]),
                                capsys, monkeypatch)
    assert failed and "does not exist" in result["msg"]
