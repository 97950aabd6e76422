"""The partial-recovery plan: missing window, history coverage, impacted metrics, overrides, derived events."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ansible_collections.ceptra.backfill.plugins.filter import recovery as filters
from ansible_collections.ceptra.backfill.plugins.module_utils import _recovery as rec
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source
from ansible_collections.ceptra.backfill.plugins.module_utils._snapshot import settled_view, window_panes

NOW = 10_000_000_000_000


def _parts(*spans_per_part):
    return [{"part_id": str(i), "unavailable_windows": spans} for i, spans in enumerate(spans_per_part)]


def test_window_is_the_union_of_outage_spans_widened_by_the_margin():
    parts = _parts([], [{"start_ts_ns": 100_000_000, "end_ts_ns": 200_000_000}],
                   [{"start_ts_ns": 150_000_000, "end_ts_ns": 300_000_000}], [])
    plan = rec.missing_window(parts, NOW, margin_ms=10)
    assert plan["partitions"] == ["1", "2"] and plan["source"] == "unavailable_windows" and plan["found"]
    assert (plan["window_start_ns"], plan["window_end_ns"]) == (90_000_000, 310_000_000)
    assert plan["in_progress"] == []


def test_outage_in_progress_and_since_filter():
    parts = _parts([{"start_ts_ns": 1, "end_ts_ns": 5}], [{"start_ts_ns": NOW - 10, "end_ts_ns": NOW + 10}])
    plan = rec.missing_window(parts, NOW, since_ns=6, margin_ms=0)
    assert plan["partitions"] == ["1"] and plan["in_progress"] == ["1"]


def test_operator_window_and_refusals():
    parts = _parts([{"start_ts_ns": 10, "end_ts_ns": 20}], [])
    plan = rec.missing_window(parts, NOW, wanted=["1", "0"], start_ns=0, end_ns=50)
    assert plan["source"] == "operator" and plan["partitions"] == ["0", "1"] and plan["windows"] == {
        "0": [{"start_ts_ns": 10, "end_ts_ns": 20}]}
    with pytest.raises(rec.RecoveryPlanError, match="unknown partition id"):
        rec.missing_window(parts, NOW, wanted=["7"])
    with pytest.raises(rec.RecoveryPlanError, match="give both"):
        rec.missing_window(parts, NOW, start_ns=5)
    with pytest.raises(rec.RecoveryPlanError, match="must be below"):
        rec.missing_window(parts, NOW, start_ns=5, end_ns=5)
    nothing = rec.missing_window(_parts([], []), NOW)
    assert nothing["found"] is False and nothing["partitions"] == [] and nothing["window_start_ns"] is None


def _history(tmp_path, rows):
    path = str(tmp_path / "h.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ceptra_history (part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL,"
                 " event_id TEXT NOT NULL, partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL,"
                 " flags TEXT)")
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return path


def test_history_coverage_per_partition(tmp_path):
    rows = []
    for i in range(10):
        payload = {"metric": "m_src", "value": 1.0}
        if i < 8:
            payload["secondary_classification"] = "benign"
        rows.append(("0", None, 1000 + i, "e%d" % i, "k", "s", json.dumps(payload), None))
    rows.append(("1", None, 1000, "x1", "k", "s", json.dumps({"metric": "other"}), json.dumps(["DERIVED"])))
    rows.append(("1", None, 5000, "late", "k", "s", json.dumps({"metric": "other"}), None))  # outside the window
    path = _history(tmp_path, rows)
    source = open_source({"type": "sqlite", "path": path, "window": {"start_ns": 1000, "end_ns": 2000}})
    try:
        summary = rec.summarize_history(source, ["0", "1"], ["secondary_classification"], ["DERIVED"], ["value"], page=3)
    finally:
        source.close()
    assert summary["partitions"]["0"]["events"] == 10 and summary["partitions"]["0"]["coverage"] == 0.8
    assert summary["partitions"]["1"] == dict(summary["partitions"]["1"], events=1, annotated=1, coverage=1.0,
                                              missing_attributes={"value": 1})
    assert summary["min_coverage"] == 0.8 and summary["events"] == 11 and summary["coverage"] == round(9 / 11, 6)
    assert summary["source_metrics"] == ["m_src", "other"] and summary["missing_attributes"] == {"value": 1}


def test_impacted_metrics_and_lateness_override():
    queries = [{"metric": "a", "source_metric": "m_src"}, {"metric": "b", "source_metric": "other"},
               {"metric": "c"}, "junk"]
    assert rec.impacted_metrics(queries, ["m_src"]) == ["a"]
    hour = rec.HOUR_MS
    settings = rec.lateness_override(["b", "a"], window_start_ns=NOW - 90 * 60 * 1_000_000_000, now_ns=NOW,
                                     min_lateness_ms=hour, min_correction_ms=2 * hour)
    # 90 minutes old + 1 h margin -> 3 h (whole hours), above both minimums
    assert settings == {"metrics": {"a": {"lateness_allowance_ms": 3 * hour, "correction_horizon_ms": 3 * hour},
                                    "b": {"lateness_allowance_ms": 3 * hour, "correction_horizon_ms": 3 * hour}}}
    # a resumed run a few minutes later computes the same settings
    assert rec.lateness_override(["a", "b"], NOW - 90 * 60 * 1_000_000_000, NOW + 5 * 60 * 1_000_000_000, hour,
                                 2 * hour) == settings
    assert rec.lateness_override([], 0, NOW, hour, hour) == {}


def test_derived_event_duplicates():
    events = [{"derived_event_id": "a", "source_event_id": "e1", "rule_id": "r", "channel": "c"},
              {"derived_event_id": "a", "source_event_id": "e1", "rule_id": "r", "channel": "c"},
              {"derived_event_id": "b", "source_event_id": "e1", "rule_id": "r", "channel": "c"},
              {"derived_event_id": "d", "source_event_id": "e2", "rule_id": "r", "channel": "c"}]
    twice, repeated = rec.derived_event_duplicates(events)
    assert repeated == 1
    assert twice == [{"source_event_id": "e1", "rule_id": "r", "channel": "c", "derived_event_ids": ["a", "b"]}]


def test_filters():
    assert filters.pluck({"0": {"events": 3}, "1": {}}, "events") == {"0": 3, "1": None}
    config = {"x": 1, "annotations": {"ceptra.backfill/overrides": {}, "keep": {"a": 1}}}
    assert filters.without_empty_ledgers(config) == {"x": 1, "annotations": {"keep": {"a": 1}}}
    assert filters.lateness_override(["m"], NOW, NOW, 1, 1, 0) == {
        "metrics": {"m": {"lateness_allowance_ms": 1, "correction_horizon_ms": 1}}}
    with pytest.raises(Exception, match="list of metric names"):
        filters.lateness_override("m", NOW)


def test_settled_view_and_window_panes():
    snap = {"metrics": {"m": {"raw": {"lane": {"100": {"count": 1}, "200": {"count": 2}}, "empty": {"300": {}}},
                              "compacted": {}}}, "late": {}, "digest": "x"}
    assert settled_view(snap, 150)["metrics"] == {"m": {"raw": {"lane": {"100": {"count": 1}}}, "compacted": {}}}
    assert settled_view(snap, None) is snap
    assert window_panes(snap, 150, 400) == {"m": {"raw": 2}}
