# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The full-recovery plan: affected partitions, start positions, dedup capacity, L and C, bounds."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _full_recovery as fr

NOW = 1_800_000_000_000_000_000
MIN = 60 * 1_000_000_000


def manifest(part_id, applied, full_index=0, ts_high=0, gate="open", occupancy=0):
    return {"part_id": part_id, "applied_index": applied, "commit_index": applied, "ingress_gate": gate,
            "checkpoint": {"full_index": full_index, "age_ms": 10, "event_ts_high_ns": ts_high},
            "dedup": {"capacity": 1000000, "occupancy": occupancy}}


STATE = {"partitions": [manifest("0", 900), manifest("1", 500, 500, NOW - 20 * MIN, "warmup", 400),
                        manifest("2", 0, 0, 0, "warmup"), manifest("3", 40, 10, NOW, "warmup")]}


def test_wiped_partitions_are_the_warmup_ones_with_nothing_past_the_baseline():
    # "3" is in warmup but applied past its baseline (a replay already ran there): not found by discovery
    assert fr.affected_partitions(STATE) == ["1", "2"]
    assert fr.affected_partitions(STATE, ["3", "0"]) == ["0", "3"]
    with pytest.raises(fr.FullRecoveryError, match="unknown partition.*9"):
        fr.affected_partitions(STATE, ["9"])


def test_start_positions_follow_the_baseline_checkpoint():
    parts = fr.manifests(STATE)
    raft = fr.start_of(parts["1"], "raft_index", 2000)
    assert raft["mode"] == "raft_index" and raft["source_bound"] == {"after_raft_index": 500}
    by_time = fr.start_of(parts["1"], "event_time", 2000)
    assert by_time["mode"] == "event_time" and by_time["boundary_dedup"] == "event_id"
    assert by_time["source_bound"] == {"from_event_time_ns": NOW - 20 * MIN - 2000 * 1_000_000}
    assert fr.start_of(parts["2"], "raft_index", 2000)["mode"] == "start_of_history"
    assert fr.start_of(parts["2"], "raft_index", 2000)["source_bound"] is None


def test_dedup_need_holds_baseline_replay_and_a_retry_window_of_live_events():
    # 400 baseline entries + 10,000 replayed + 5 ev/s live for max(20 s run, 1800 s window), 25 % headroom
    assert fr.dedup_need(400, 10000, 5.0, 20.0, 1800) == int((400 + 10000 + 9000) * 1.25)
    assert fr.dedup_need(0, 0, 0, 0, 1800, headroom=1.0) == 0


def inputs(**changes):
    base = {"run_id": "r1", "state": STATE, "config": {}, "part_ids": ["1", "2"],
            "starts": {"1": fr.start_of(fr.manifests(STATE)["1"], "raft_index", 2000),
                       "2": fr.start_of(fr.manifests(STATE)["2"], "raft_index", 2000)},
            "replay": {"partitions": {"1": {"events_remaining": 3000, "min_ts_ns": NOW - 20 * MIN, "status": "pending"},
                                      "2": {"events_remaining": 6000, "min_ts_ns": NOW - 40 * MIN, "status": "pending"}}},
            "horizon_ns": NOW, "now_ns": NOW, "window_s": 3600, "live_rate_eps": 1.0, "estimated_rate": 1000.0,
            "dedup_headroom": 1.25, "order_by": "raft_index", "resumed": False}
    base.update(changes)
    return base


def test_plan_widens_l_and_c_on_the_affected_partitions_to_cover_the_oldest_event():
    plan = fr.build_plan(inputs(config={"metrics": {"m_fast": {"lateness_allowance_ms": 100}}}))
    needed = 40 * 60 * 1000 + 3600 * 1000
    assert plan["lateness_correction_needed_ms"] == needed
    assert plan["overrides"]["partitions"] == {p: {"lateness_allowance_ms": needed, "correction_horizon_ms": needed}
                                               for p in ("1", "2")}
    # a per-metric knob would shadow the partition's: widened too; C has no per-metric entry
    assert plan["overrides"]["metrics"] == {"m_fast": {"lateness_allowance_ms": needed}}
    assert "dedup_capacity_per_partition" not in plan["overrides"]     # fits in 1,000,000
    assert plan["partitions"]["1"]["dedup"] == {"occupancy": 400, "capacity": 1000000,
                                                "needed": int((400 + 3000 + 1800) * 1.25)}
    assert plan["source_partition_start"] == {"1": {"after_raft_index": 500}}
    assert plan["events"] == 9000
    assert any("partition 1: after raft index 500; 3000 event(s) left" in line for line in fr.plan_lines(plan))


def test_plan_raises_the_dedup_capacity_when_replay_and_live_would_not_fit():
    plan = fr.build_plan(inputs(config={"dedup_capacity_per_partition": 5000}))
    needed = int((0 + 6000 + 1800) * 1.25)
    assert plan["dedup_capacity"] == {"current": 5000, "needed": needed, "raise_to": 10000}
    assert plan["overrides"]["dedup_capacity_per_partition"] == 10000


def test_plan_refuses_a_knob_beyond_its_bounds_before_any_change():
    huge = inputs(live_rate_eps=100000.0)       # 100k ev/s live for a retry window: 225 M entries
    with pytest.raises(fr.FullRecoveryError, match=r"refused before any config change: "
                                                   r"dedup_capacity_per_partition: .*\[1, 100000000\]") as err:
        fr.build_plan(huge)
    assert err.value.details["violations"][0]["path"] == "dedup_capacity_per_partition"
    ancient = inputs(replay={"partitions": {"1": {"events_remaining": 1, "min_ts_ns": NOW - 11 * 365 * 24 * 60 * MIN}}})
    with pytest.raises(fr.FullRecoveryError, match=r"partitions\.1\.lateness_allowance_ms: .* out of bounds"):
        fr.build_plan(ancient)


def test_nothing_left_to_replay_needs_no_override():
    done = inputs(replay={"partitions": {"1": {"events_remaining": 0, "events_done": 3000, "status": "done"},
                                         "2": {"events_remaining": 0, "events_done": 6000, "status": "done"}}},
                  live_rate_eps=0.0)
    plan = fr.build_plan(done)
    assert plan["overrides"] == {} and plan["events"] == 0
