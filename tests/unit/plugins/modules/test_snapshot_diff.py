"""Unit tests of the snapshot_diff module (fake control plane, real AnsibleModule)."""

import json

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
from ansible_collections.ceptra.backfill.plugins.modules import metrics_snapshot, snapshot_diff

from ..test_support.control_plane import plane_with_snapshots as cluster_with
from ..test_support.control_plane import snapshot


def test_snapshot_diff_two_partitions(run_module):
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1"}, cluster_with([1.0, 1.0]))
    assert not failed and result["equal"] is True and result["changed"] is False
    assert result["left"] == "partition 0 of http://127.0.0.1:1"
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1", "fail_on_difference": True},
                                cluster_with([1.0, 2.0]))
    assert failed and result["equal"] is False
    assert result["value_differences"][0]["path"] == "metrics/m/raw//1000"
    first = result["value_differences"][0]
    assert (first["left"], first["right"]) == ({"sum": 1.0}, {"sum": 2.0})
    assert "differ" in result["msg"] and "metrics: m" in result["msg"]


def test_snapshot_diff_saved_file_against_live(tmp_path, run_module):
    cluster = cluster_with([1.0, 1.0])
    dest = tmp_path / "before.json"
    run_module(metrics_snapshot, {"dest": str(dest)}, cluster)
    cluster.snapshots["1"] = snapshot("1", 5.0)
    failed, result = run_module(snapshot_diff, {"left_src": str(dest), "part_id": "1"}, cluster)
    assert not failed and result["equal"] is False and result["counts"]["value_differences"] == 1
    assert result["left"] == "file %s partition 1" % dest


def test_snapshot_diff_second_cluster(monkeypatch, run_module):
    main, other = cluster_with([1.0]), cluster_with([1.0])
    other.snapshots["0"]["metrics"]["extra"] = {"raw": {"": {"5": {"sum": 1.0}}}}
    built = []
    monkeypatch.setattr(CeptraClient, "from_options", classmethod(lambda cls, options: built.append(options) or other))
    args = {"part_id": "0", "other": {"url": "http://127.0.0.1:2", "token": "other-secret"}}
    failed, result = run_module(snapshot_diff, args, main)
    assert not failed and result["equal"] is False
    assert result["only_right"][0]["metric"] == "extra" and result["right"] == "partition 0 of http://127.0.0.1:2"
    assert "other-secret" not in json.dumps(result)
    assert [o["url"] for o in built] == ["http://127.0.0.1:2"] and other.closed


def test_snapshot_diff_against_itself_is_refused(run_module):
    failed, result = run_module(snapshot_diff, {"part_id": "0"}, cluster_with([1.0]))
    assert failed and "nothing to compare" in result["msg"]


def test_snapshot_diff_compares_only_settled_panes(run_module):
    cluster = cluster_with([1.0, 1.0])
    cluster.snapshots["1"]["metrics"]["m"]["raw"][""]["2000"] = {"sum": 9.0}   # a pane still moving
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1", "settled_before_ns": 1500},
                                cluster)
    assert not failed and result["equal"] is True and result["settled_before_ns"] == 1500
    failed, result = run_module(snapshot_diff, {"part_id": "0", "other_part_id": "1"}, cluster)
    assert result["equal"] is False and result["counts"]["only_right"] == 1


def test_metrics_snapshot_counts_the_window_panes(run_module):
    failed, result = run_module(metrics_snapshot, {"window_start_ns": 0, "window_end_ns": 5000,
                                                   "return_snapshots": False}, cluster_with([1.0]))
    assert not failed and result["window_panes"] == {"0": {"m": {"raw": 1}}}
