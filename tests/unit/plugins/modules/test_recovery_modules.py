"""missing_window_info, history_info, derived_events_info and hold_point as Ansible runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

from ansible_collections.ceptra.backfill.plugins.modules import (
    derived_events_info,
    history_info,
    hold_point,
    missing_window_info,
)

from ..test_support.http_server import Reply

SPAN = {"start_ts_ns": 1_000_000_000, "end_ts_ns": 2_000_000_000}


def test_missing_window_from_outage_spans(server, run_module):
    server.on("GET", "/v1/state", Reply(200, {"partitions": [{"part_id": "0"}, {"part_id": "1", "unavailable_windows": [SPAN]}]}))
    server.on("GET", "/v1/audit", Reply(200, {"records": [{"id": "a-1", "kind": "outage", "details": {"part_ids": ["1"]}}]}))
    failed, result = run_module(missing_window_info, {"url": server.url, "margin_ms": 0})
    assert not failed and result["changed"] is False
    assert result["partitions"] == ["1"] and result["window_start_ns"] == SPAN["start_ts_ns"]
    assert result["window_end_ns"] == SPAN["end_ts_ns"] and result["in_progress"] == []
    assert [r["id"] for r in result["audit_outages"]] == ["a-1"]


def test_missing_window_refuses_half_a_window(server, run_module):
    server.on("GET", "/v1/state", Reply(200, {"partitions": [{"part_id": "0"}]}))
    server.on("GET", "/v1/audit", Reply(200, {"records": []}))
    failed, result = run_module(missing_window_info, {"url": server.url, "window_start_ns": 5})
    assert failed and result["msg"].startswith("Could not find the missing window: give both window_start_ns")


def test_history_info_reads_the_window(tmp_path, run_module):
    path = str(tmp_path / "h.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ceptra_history (part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL,"
                 " event_id TEXT NOT NULL, partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL,"
                 " flags TEXT)")
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)", [
        ("0", None, 10, "a", "k", "s", json.dumps({"metric": "src", "secondary_classification": "x"}), None),
        ("0", None, 11, "b", "k", "s", json.dumps({"metric": "src"}), None),
        ("0", None, 99, "c", "k", "s", json.dumps({"metric": "src"}), None)])
    conn.commit()
    conn.close()
    failed, result = run_module(history_info, {"source": {"type": "sqlite", "path": path}, "window_start_ns": 0,
                                               "window_end_ns": 50, "queries": [{"metric": "m", "source_metric": "src"}]})
    assert not failed and result["events"] == 2 and result["coverage"] == 0.5
    assert result["impacted_metrics"] == ["m"] and result["partitions"]["0"]["annotated"] == 1
    failed, result = run_module(history_info, {"source": {"type": "sqlite", "path": str(tmp_path / "missing.db")}})
    assert failed and result["msg"].startswith("Could not read the historic source")


def test_derived_events_info_finds_a_decision_emitted_twice(server, run_module):
    twice = [{"derived_event_id": "a", "source_event_id": "e", "rule_id": "r", "channel": "c"},
             {"derived_event_id": "b", "source_event_id": "e", "rule_id": "r", "channel": "c"}]
    server.on("GET", "/v1/test/derived-events", Reply(200, {"part_id": "0", "derived_events": twice, "dropped": 0}))
    server.on("GET", "/v1/test/sink", Reply(200, {"received": 2, "delivered": 2}))
    failed, result = run_module(derived_events_info, {"url": server.url, "partitions": ["0"]})
    assert not failed and result["derived_events"] == 2 and result["sink"] == {"received": 2, "delivered": 2}
    assert result["decisions_emitted_twice"][0]["derived_event_ids"] == ["a", "b"]


def test_hold_point_waits_for_the_file_and_times_out(tmp_path, run_module):
    path = str(tmp_path / "run.hold-restore_defaults")
    failed, result = run_module(hold_point, {"path": path, "step": "restore_defaults"}, check_mode=True)
    assert not failed and result["held"] and not os.path.exists(path)
    remover = threading.Timer(0.5, lambda: os.remove(path))
    remover.start()
    started = time.monotonic()
    failed, result = run_module(hold_point, {"path": path, "step": "restore_defaults", "interval": 0.1, "timeout": 20})
    assert not failed and result["waited_s"] > 0 and time.monotonic() - started < 20
    failed, result = run_module(hold_point, {"path": path, "step": "restore_defaults", "interval": 0.1, "timeout": 1})
    assert failed and "Gate: hold before restore_defaults" in result["msg"] and os.path.exists(path)
