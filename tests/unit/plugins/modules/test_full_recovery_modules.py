# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""full_recovery_plan and ingress_gate: the modules over their module_utils (in-memory control plane)."""

from __future__ import annotations

import sqlite3

from ansible_collections.ceptra.backfill.plugins.modules import full_recovery_plan, ingress_gate

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import write_history

TS0 = 1_700_000_000_000_000_000


def plane_with_wipes():
    plane = ControlPlane(partitions=3)
    plane.wiped = {"1", "2"}
    plane.checkpoints = {"1": {"full_index": 10, "event_ts_high_ns": TS0 + 10}}
    return plane


def args(tmp_path, **more):
    history = str(tmp_path / "history.db")
    if not (tmp_path / "history.db").exists():
        write_history(history, parts=3, n=30)
    base = {"run_id": "r1", "source": {"type": "sqlite", "path": history},
            "cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.db")}}
    base.update(more)
    return base


def test_plan_finds_the_wiped_partitions_and_starts_after_their_baselines(run_module, tmp_path):
    plane = plane_with_wipes()
    failed, result = run_module(full_recovery_plan, args(tmp_path), client=plane)
    assert not failed and not result["changed"]
    plan = result["plan"]
    assert plan["part_ids"] == ["1", "2"] and plan["order_by"] == "raft_index" and not plan["resumed"]
    assert plan["partitions"]["1"]["start"]["mode"] == "raft_index" and plan["partitions"]["1"]["events"] == 20
    assert plan["partitions"]["2"]["start"]["mode"] == "start_of_history" and plan["partitions"]["2"]["events"] == 30
    assert result["replay_source"]["partition_start"] == {"1": {"after_raft_index": 10}}
    assert result["replay_source"]["window"]["end_ns"] == plan["horizon_ns"]
    assert result["record"]["record_id"] == "r1/full_recovery_plan"
    assert not plane.writes()


def test_plan_falls_back_to_event_time_when_the_history_has_no_raft_index(run_module, tmp_path):
    more = args(tmp_path)
    conn = sqlite3.connect(more["source"]["path"])
    conn.execute("UPDATE ceptra_history SET raft_index = NULL")
    conn.commit()
    conn.close()
    failed, result = run_module(full_recovery_plan, dict(more, boundary_overlap_ms=0), client=plane_with_wipes())
    assert not failed, result
    start = result["plan"]["partitions"]["1"]["start"]
    assert result["plan"]["order_by"] == "event_time" and start["mode"] == "event_time"
    assert start["source_bound"] == {"from_event_time_ns": TS0 + 10}
    assert result["plan"]["partitions"]["1"]["events"] == 21     # the high-water mark's own event again (dedup)


def test_a_recorded_plan_is_resumed(run_module, tmp_path):
    plane = plane_with_wipes()
    _failed, first = run_module(full_recovery_plan, args(tmp_path), client=plane)
    plane.audit.append({"id": "a-1", "ts": 0, "actor": "x", "kind": "full_recovery_plan", "details": first["record"]})
    plane.wiped = set()                      # the gates were opened since: discovery would find nothing
    failed, again = run_module(full_recovery_plan, args(tmp_path), client=plane)
    assert not failed and again["plan"]["resumed"] and again["plan"]["part_ids"] == ["1", "2"]
    assert again["plan"]["horizon_ns"] == first["plan"]["horizon_ns"]


def test_plan_without_wiped_partitions_says_what_to_do(run_module, tmp_path):
    failed, result = run_module(full_recovery_plan, args(tmp_path), client=ControlPlane(partitions=3))
    assert failed and "no partition is in warmup at its baseline checkpoint" in result["msg"]


def test_plan_refuses_a_dedup_table_beyond_its_bound(run_module, tmp_path):
    failed, result = run_module(full_recovery_plan, args(tmp_path, live_rate_eps=1e6), client=plane_with_wipes())
    assert failed and "refused before any config change" in result["msg"]
    assert result["violations"][0]["path"] == "dedup_capacity_per_partition"


def test_ingress_gate_module_opens_and_closes(run_module):
    plane = ControlPlane(partitions=3)
    plane.wiped = {"1"}
    failed, result = run_module(ingress_gate, {"partitions": ["1"], "run_id": "r1"}, client=plane)
    assert not failed and result["changed"] and result["open"] == ["1"]
    failed, result = run_module(ingress_gate, {"partitions": ["1"], "state": "warmup"}, client=plane)
    assert not failed and result["closed"] == ["1"] and plane.gate("1") == "warmup"
    plane.reasons = {"1": ["apply_lag"]}
    failed, result = run_module(ingress_gate, {"partitions": ["1"], "wait_timeout": 0.05, "poll_interval": 0.01},
                                client=plane)
    assert failed and result["msg"].startswith("Could not set the ingress gate") and "Gate: ingress open" in result["msg"]
    assert result["blocked"] == {"1": ["apply_lag"]}
