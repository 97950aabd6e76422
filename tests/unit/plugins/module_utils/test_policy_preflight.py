"""Unit tests of _policy_preflight: what a policy bundle V+1 needs before it is deployed."""

import copy

from ansible_collections.ceptra.backfill.plugins.module_utils import _policy_preflight as pre

from ..test_support.control_plane import DEFAULT_CONFIG, ControlPlane
from ..test_support.replay_fakes import MemorySource, make_event

DAY_MS = 86400000
NOW_NS = 1_800_000_000_000_000_000

FLAGS = {"phase": "agg", "metric": "flags", "labels": ["player_id"], "range_ms": 3600000, "upgrade": True,
         "source_metric": "flags_total", "matchers": [["queue", "=", "ranked"]]}
FLAGS_MAX = dict(FLAGS, metric="flags_max", upgrade=False, matchers=[["region", "!=", ""]])
FLAGS_180D = dict(FLAGS, metric="flags_180d", range_ms=180 * DAY_MS, labels=["player_id", "device"])
BUNDLE = {"bundle": {"name": "policy", "def_version": 2, "lane_domains": {"player_id": {"max_per_partition": 8},
                                                                          "device": {"max_per_partition": 4}}},
          "workflow": {"phases": []}}


def history(*label_sets):
    return MemorySource({"0": [make_event("0", i + 1, metric="flags_total", labels=dict.fromkeys(labels, "x"))
                               for i, labels in enumerate(label_sets)]})


def plane(queries, config=None):
    cluster = ControlPlane(partitions=2, config=config)
    cluster.compiled_queries = queries
    cluster.add_bundle("policy@v1")
    cluster.active = "policy@v1"
    cluster.active_extra = {}
    cluster.bundles["policy@v1"]["compiled_queries"] = [FLAGS]
    return cluster


def run(cluster, source, **kwargs):
    kwargs.setdefault("now_ns", NOW_NS)
    return pre.preflight(cluster, copy.deepcopy(BUNDLE), source={"type": "memory"}, open_source=lambda spec: source,
                         **kwargs)


def test_query_attributes_are_by_labels_and_positive_matchers():
    assert pre.query_attributes(FLAGS) == ("flags_total", ["player_id", "queue"])
    assert pre.query_attributes(FLAGS_MAX) == ("flags_total", ["player_id"])     # != "" matches without the label


def test_a_clean_bundle_passes_and_names_the_metrics_needing_replay():
    config = dict(DEFAULT_CONFIG, compacted_retention_ms=365 * DAY_MS)
    result = run(plane([FLAGS, FLAGS_MAX, FLAGS_180D], config), history(["player_id", "queue", "device"]),
                 window_start_ns=NOW_NS - 30 * DAY_MS * 1000000)
    assert result["ok"] is True, result["problems"]
    assert result["replay_metrics"] == [{"metric": "flags_max", "reason": "upgrade_false"},
                                        {"metric": "flags_180d", "reason": "new_metric"}]
    assert result["upgrade_false_metrics"] == ["flags_max"] and result["needs_wal_replay"] is True
    assert result["history"] == {"metrics": {"flags_total": ["device", "player_id", "queue"]}, "events_scanned": 1,
                                 "partitions": ["0"], "complete": True}
    assert [p["projected_lanes"] for p in result["lane_projections"]] == [8, 8, 32]
    assert result["retention"]["required_compacted_retention_ms"] == 181 * DAY_MS
    assert set(result["wal_coverage"]) == {"0", "1"}


def test_missing_attributes_are_reported_per_metric():
    source = history(["player_id"], ["player_id", "queue"])
    result = run(plane([FLAGS, FLAGS_180D, dict(FLAGS, metric="logins", source_metric="logins_total")]), source)
    assert result["ok"] is False
    assert result["missing_attributes"] == {"flags_180d": ["label device of flags_total"],
                                            "logins": ["logins_total (no event of this metric in the history)"]}
    messages = [p["message"] for p in result["problems"] if p["check"] == "attributes"]
    assert len(messages) == 2 and "flags_180d reads label device of flags_total" in messages[0]
    assert "2 events scanned" in messages[0]


def test_scan_limit_reads_a_sample_and_says_so():
    source = history(*[["player_id", "queue"]] * 5)
    result = pre.scan_history(source, limit=2)
    assert result["events_scanned"] == 2 and result["complete"] is False
    assert pre.scan_history(source, limit=0)["complete"] is True


def test_lane_budget_over_64_with_the_clusters_lane_override_is_a_problem():
    config = dict(DEFAULT_CONFIG, lane_domains={"device": {"max_per_partition": 16}})
    result = run(plane([FLAGS_180D], config), history(["player_id", "device", "queue"]))
    (problem,) = [p for p in result["problems"] if p["check"] == "lane_budget"]
    assert problem["projected_lanes"] == 128 and "LANE_MAX_PER_PARTITION 64" in problem["message"]


def test_a_bundle_the_cluster_refuses_is_a_finding_not_a_crash():
    cluster = plane([])
    cluster.validate_violations = [{"path": "workflow.phases[1].options.queries.q.expression",
                                    "message": "query 'q' projects 1024 lanes per partition (a 64 x b 16), above "
                                               "LANE_MAX_PER_PARTITION 64"},
                                   {"path": "bundle.def_version", "message": "must be a positive integer"}]
    result = run(cluster, history(["player_id"]))
    assert [p["check"] for p in result["problems"]] == ["lane_budget", "bundle_invalid"]
    assert [c.route for c in cluster.writes()] == ["definitions_validate"]     # a read-only POST


def test_too_short_compacted_retention_names_the_value_to_set():
    config = dict(DEFAULT_CONFIG, compacted_retention_ms=90 * DAY_MS)
    result = run(plane([FLAGS_180D], config), history(["player_id", "device", "queue"]))
    (problem,) = result["problems"]
    assert problem["check"] == "retention" and problem["required_compacted_retention_ms"] == 181 * DAY_MS
    assert "raise compacted_retention_ms" in problem["message"]


def test_without_a_source_the_attribute_check_is_a_problem_not_skipped():
    result = pre.preflight(plane([FLAGS]), copy.deepcopy(BUNDLE), source=None, now_ns=NOW_NS)
    assert result["ok"] is False and result["problems"][0]["check"] == "attributes"


def test_wal_coverage_names_what_a_checkpoint_replay_does_not_rebuild():
    coverage = pre.wal_coverage({"partitions": [{"part_id": "0", "checkpoint": {"full_index": 40}, "commit_index": 90},
                                                {"part_id": "1", "commit_index": 5}]})
    assert coverage["0"]["not_rebuilt"] == 40 and coverage["1"]["rebuilt_after_index"] == 0


def test_summary_lines_list_every_problem():
    config = dict(DEFAULT_CONFIG, compacted_retention_ms=DAY_MS)
    result = run(plane([FLAGS_MAX], config), history(["queue"]))
    lines = pre.summary_lines(result)
    assert any(line.startswith("PROBLEM attributes") for line in lines)
    assert any(line.startswith("PROBLEM retention") for line in lines)


def test_the_override_widens_l_and_c_of_the_metrics_the_history_feeds_only():
    other = dict(FLAGS, metric="logins", source_metric="logins_total")
    affected, settings = pre.override_plan([FLAGS, FLAGS_180D, other], {"flags_total": []}, lookback_ms=10 * DAY_MS)
    assert affected == ["flags", "flags_180d"]
    knobs = {"lateness_allowance_ms": 10 * DAY_MS + 3600000, "correction_horizon_ms": 10 * DAY_MS + 3600000}
    assert settings == {"metrics": {"flags": knobs, "flags_180d": knobs}}
    assert pre.override_plan([FLAGS], {}, 0) == ([], {})
    dummy, small = pre.override_plan([FLAGS], None, 0)
    assert small["metrics"]["flags"] == {"lateness_allowance_ms": 3600000, "correction_horizon_ms": 7200000}
