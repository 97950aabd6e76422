"""Unit tests of _snapshot: the deterministic snapshot diff, saved files and fetching."""

import copy
import json
import random

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _snapshot as snap

from ..test_support.control_plane import ControlPlane


def make_snapshot(part_id="0", **overrides):
    base = {
        "part_id": part_id,
        "applied_index": 42,
        "metrics": {
            "anti_cheat_flags": {
                "raw": {
                    "player_id=p1": {"1000": {"sum": 3.0, "count": 2}, "2000": {"sum": 1.0, "count": 1}},
                    "player_id=p2": {"1000": {"sum": 5.0, "count": 5}},
                },
                "compacted": {"player_id=p1": {"0": {"sum": 10.0, "count": 4}}},
            },
            "matchmaking_latency_p95": {"raw": {"": {"1000": {"values": [0.1, 0.2]}}}, "compacted": {}},
        },
        "late": {"anti_cheat_flags": {"FINALIZED": 2}},
        "digest": "sha256:abc",
    }
    base.update(overrides)
    return base


def test_identical_snapshots_are_equal_even_at_other_indexes_and_partitions():
    left = make_snapshot("0")
    right = make_snapshot("1", applied_index=99, digest="sha256:other", extra_field={"x": 1})
    diff = snap.diff_snapshots(left, right)
    assert diff["equal"] is True
    assert diff["counts"] == {"only_left": 0, "only_right": 0, "value_differences": 0}
    assert diff["digests"] == {"left": "sha256:abc", "right": "sha256:other"}


def test_a_pane_value_difference_carries_both_values_and_its_coordinates():
    left = make_snapshot()
    right = make_snapshot()
    right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p1"]["2000"] = {"sum": 2.0, "count": 2}
    diff = snap.diff_snapshots(left, right)
    assert diff["equal"] is False
    assert diff["value_differences"] == [{
        "section": "metrics", "path": "metrics/anti_cheat_flags/raw/player_id=p1/2000",
        "metric": "anti_cheat_flags", "tier": "raw", "lane": "player_id=p1", "pane_start_ns": "2000",
        "left": {"sum": 1.0, "count": 1}, "right": {"sum": 2.0, "count": 2}}]
    assert diff["differing_metrics"] == ["anti_cheat_flags"]


def test_only_left_and_only_right_at_every_level():
    left = make_snapshot()
    right = make_snapshot()
    del right["metrics"]["matchmaking_latency_p95"]                                    # metric only left
    del right["metrics"]["anti_cheat_flags"]["compacted"]                             # tier only left
    right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p3"] = {"5000": {"sum": 1.0, "count": 1}}  # lane only right
    del right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p1"]["1000"]           # pane only left
    diff = snap.diff_snapshots(left, right)
    only_left = {e["path"]: e for e in diff["only_left"]}
    assert set(only_left) == {"metrics/anti_cheat_flags/compacted", "metrics/anti_cheat_flags/raw/player_id=p1/1000",
                              "metrics/matchmaking_latency_p95"}
    assert only_left["metrics/matchmaking_latency_p95"]["panes"] == 1
    assert only_left["metrics/anti_cheat_flags/compacted"]["panes"] == 1
    assert only_left["metrics/anti_cheat_flags/raw/player_id=p1/1000"]["value"] == {"sum": 3.0, "count": 2}
    assert diff["only_right"] == [{"section": "metrics", "path": "metrics/anti_cheat_flags/raw/player_id=p3",
                                   "metric": "anti_cheat_flags", "tier": "raw", "lane": "player_id=p3", "panes": 1}]
    assert diff["differing_metrics"] == ["anti_cheat_flags", "matchmaking_latency_p95"]
    assert diff["counts"] == {"only_left": 3, "only_right": 1, "value_differences": 0}


def test_late_counters_are_compared_key_by_key():
    right = make_snapshot(late={"anti_cheat_flags": {"FINALIZED": 3, "FUTURE_SKEW": 1}})
    diff = snap.diff_snapshots(make_snapshot(), right)
    assert diff["value_differences"][0]["path"] == "late/anti_cheat_flags/FINALIZED"
    assert (diff["value_differences"][0]["left"], diff["value_differences"][0]["right"]) == (2, 3)
    assert diff["only_right"][0]["path"] == "late/anti_cheat_flags/FUTURE_SKEW"
    assert diff["only_right"][0]["value"] == 1
    # Differences outside "metrics" name no metric.
    assert diff["differing_metrics"] == []


def test_sections_limit_what_is_compared():
    right = make_snapshot(late={})
    assert snap.diff_snapshots(make_snapshot(), right, sections=["metrics"])["equal"] is True
    assert snap.diff_snapshots(make_snapshot(), right)["equal"] is False


def test_the_diff_is_deterministic_whatever_the_key_order():
    left = make_snapshot()
    right = make_snapshot()
    for lane in ("player_id=p1", "player_id=p2"):
        right["metrics"]["anti_cheat_flags"]["raw"][lane] = {"10": {"sum": 0.5, "count": 1},
                                                             "9": {"sum": 0.5, "count": 1}}
    expected = snap.diff_snapshots(left, right)

    def shuffled(value, rng):
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {k: shuffled(v, rng) for k, v in items}
        return value

    for seed in range(5):
        rng = random.Random(seed)
        assert snap.diff_snapshots(shuffled(left, rng), shuffled(right, rng)) == expected
    # Numeric pane keys sort numerically: 9 before 10.
    right_panes = [e["pane_start_ns"] for e in expected["only_right"] if e["lane"] == "player_id=p2"]
    assert right_panes == ["9", "10"]


def test_tolerance_applies_to_numbers_only():
    left = make_snapshot()
    right = copy.deepcopy(left)
    right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p1"]["1000"]["sum"] = 3.0 + 1e-12
    assert snap.diff_snapshots(left, right)["equal"] is False
    assert snap.diff_snapshots(left, right, tolerance=1e-9)["equal"] is True
    right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p1"]["1000"]["count"] = 3
    assert snap.diff_snapshots(left, right, tolerance=1e-9)["counts"]["value_differences"] == 1


@pytest.mark.parametrize("left, right, tolerance, equal", [
    (True, 1, 0, False),
    (1, 1.0, 0, True),
    (float("nan"), float("nan"), 0.1, True),
    ([1, 2], [1, 2, 3], 0, False),
    ({"a": 1}, {"b": 1}, 0, False),
    ("x", "x", 0, True),
])
def test_values_equal(left, right, tolerance, equal):
    assert snap.values_equal(left, right, tolerance) is equal


def test_unexpected_shapes_compare_as_values():
    left = make_snapshot(metrics={"m": 5})
    right = make_snapshot(metrics={"m": {"raw": {}}})
    diff = snap.diff_snapshots(left, right)
    assert diff["value_differences"][0]["path"] == "metrics/m"
    assert diff["value_differences"][0]["left"] == 5


def test_max_entries_truncates_lists_but_counts_stay_exact():
    left = make_snapshot()
    right = make_snapshot()
    right["metrics"]["anti_cheat_flags"]["raw"]["player_id=p1"] = {str(i): {"sum": 1.0} for i in range(10)}
    diff = snap.diff_snapshots(left, right, max_entries=3)
    assert diff["truncated"] is True
    assert len(diff["only_right"]) == 3 and diff["counts"]["only_right"] == 10
    assert len(diff["only_left"]) == 2 and diff["counts"]["only_left"] == 2


def test_summary_sentence():
    diff = snap.diff_snapshots(make_snapshot(), make_snapshot(metrics={}))
    text = snap.summarize_diff(diff, "partition 0", "partition 1")
    assert text.startswith("snapshots partition 0 and partition 1 differ: 2 only in partition 0")
    assert "metrics: anti_cheat_flags, matchmaking_latency_p95" in text
    assert snap.summarize_diff(snap.diff_snapshots({}, {}), "a", "b") == "snapshots a and b are equal"


def test_non_object_snapshots_are_refused():
    with pytest.raises(snap.SnapshotError):
        snap.diff_snapshots([], {})


# ---------------------------------------------------------------------------- files


def test_saved_file_round_trip_and_stable_text(tmp_path):
    snapshots = {"1": make_snapshot("1"), "0": make_snapshot("0")}
    text = snap.render_snapshot_file(snapshots)
    assert text == snap.render_snapshot_file({"0": make_snapshot("0"), "1": make_snapshot("1")})
    path = tmp_path / "s.json"
    path.write_text(text)
    assert snap.load_snapshot_file(str(path), "1") == make_snapshot("1")
    with pytest.raises(snap.SnapshotError) as caught:
        snap.load_snapshot_file(str(path))
    assert "holds partitions 0, 1: say which one" in str(caught.value)
    with pytest.raises(snap.SnapshotError) as caught:
        snap.load_snapshot_file(str(path), "7")
    assert "has no partition 7 (it has 0, 1)" in str(caught.value)
    assert snap.digests_of_text(text) == {"0": "sha256:abc", "1": "sha256:abc"}


def test_a_single_raw_snapshot_file_is_accepted(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(make_snapshot("3")))
    assert snap.load_snapshot_file(str(path))["part_id"] == "3"
    assert snap.load_snapshot_file(str(path), "3")["part_id"] == "3"


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    ("{broken", "cannot read snapshot file"),
    ('{"hello": 1}', "neither a saved snapshot file"),
])
def test_bad_snapshot_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(snap.SnapshotError) as caught:
        snap.load_snapshot_file(str(path))
    assert fragment in str(caught.value)


def test_read_text_or_none(tmp_path):
    assert snap.read_text_or_none(str(tmp_path / "missing")) is None
    (tmp_path / "f").write_text("x")
    assert snap.read_text_or_none(str(tmp_path / "f")) == "x"
    assert snap.digests_of_text(None) == {}
    assert snap.digests_of_text("not json") == {"(unreadable)": None}


# ---------------------------------------------------------------------------- fetching


def test_fetch_snapshots_of_every_partition():
    cluster = ControlPlane(partitions=3)
    cluster.snapshots["1"] = make_snapshot("1")
    snapshots = snap.fetch_snapshots(cluster)
    assert list(snapshots) == ["0", "1", "2"]
    assert snapshots["1"]["digest"] == "sha256:abc"
    assert cluster.calls[1][3] == {"part_id": "0"}


def test_fetch_outside_test_mode_says_so():
    cluster = ControlPlane(test_mode=False)
    with pytest.raises(snap.SnapshotError) as caught:
        snap.fetch_snapshots(cluster)
    assert "not in test mode" in str(caught.value)
    with pytest.raises(snap.SnapshotError) as caught:
        snap.fetch_snapshot(cluster, "0")
    assert "not in test mode" in str(caught.value) and "--test-mode" in str(caught.value)


def test_fetch_of_an_unknown_partition_names_the_known_ones():
    with pytest.raises(snap.SnapshotError) as caught:
        snap.fetch_snapshot(ControlPlane(partitions=2), "9")
    assert "partition 9 does not exist; the cluster has partitions 0, 1" in str(caught.value)
