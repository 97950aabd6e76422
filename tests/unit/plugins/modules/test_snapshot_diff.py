"""Unit tests of the snapshot_diff module (fake control plane, real AnsibleModule)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bundle import run_module  # noqa: E402  pylint: disable=wrong-import-position
from test_metrics_snapshot import cluster_with, snapshot  # noqa: E402

from ansible_collections.ceptra.backfill.plugins.modules import metrics_snapshot, snapshot_diff  # noqa: E402


def test_snapshot_diff_two_partitions(capsys, monkeypatch):
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1"}, cluster_with([1.0, 1.0]),
                                capsys, monkeypatch)
    assert not failed and result["equal"] is True and result["changed"] is False
    assert result["left"] == "partition 0 of http://127.0.0.1:1"
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1", "fail_on_difference": True},
                                cluster_with([1.0, 2.0]), capsys, monkeypatch)
    assert failed and result["equal"] is False
    assert result["value_differences"][0]["path"] == "metrics/m/raw//1000"
    first = result["value_differences"][0]
    assert (first["left"], first["right"]) == ({"sum": 1.0}, {"sum": 2.0})
    assert "differ" in result["msg"] and "metrics: m" in result["msg"]


def test_snapshot_diff_saved_file_against_live(tmp_path, capsys, monkeypatch):
    cluster = cluster_with([1.0, 1.0])
    dest = tmp_path / "before.json"
    run_module(metrics_snapshot, {"dest": str(dest)}, cluster, capsys, monkeypatch)
    cluster.snapshots["1"] = snapshot("1", 5.0)
    failed, result = run_module(snapshot_diff, {"left_src": str(dest), "part_id": "1"}, cluster, capsys, monkeypatch)
    assert not failed and result["equal"] is False and result["counts"]["value_differences"] == 1
    assert result["left"] == "file %s partition 1" % dest


def test_snapshot_diff_second_cluster(capsys, monkeypatch):
    main, other = cluster_with([1.0]), cluster_with([1.0])
    other.snapshots["0"]["metrics"]["extra"] = {"raw": {"": {"5": {"sum": 1.0}}}}
    monkeypatch.setattr(snapshot_diff, "CeptraClient", lambda **kwargs: other)
    args = {"part_id": "0", "other": {"url": "http://127.0.0.1:2", "token": "other-secret"}}
    failed, result = run_module(snapshot_diff, args, main, capsys, monkeypatch)
    assert not failed and result["equal"] is False
    assert result["only_right"][0]["metric"] == "extra" and result["right"] == "partition 0 of http://127.0.0.1:2"
    assert "other-secret" not in json.dumps(result)


def test_snapshot_diff_against_itself_is_refused(capsys, monkeypatch):
    failed, result = run_module(snapshot_diff, {"part_id": "0"}, cluster_with([1.0]), capsys, monkeypatch)
    assert failed and "nothing to compare" in result["msg"]
