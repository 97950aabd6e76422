"""Partition readiness, manifest, checkpoints/WAL retention, compaction and persistence hooks."""
from __future__ import annotations

import json
import os
import sys

from ceptra_lab.config_knobs import KnobView
from ceptra_lab.partition import Partition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # shared fakes, any import mode
from test_partition import MS, START, S, Clock, event, gaming_bundle, make_config, patch  # noqa: E402

MANIFEST_KEYS = {"part_id", "leader", "routing_epoch", "commit_index", "applied_index", "wal_first_index",
                 "wal_last_index", "checkpoint", "def_version", "policy_version", "warmup", "ingress_gate",
                 "finalized_horizon_index", "finalized_horizon_ts_ns", "dedup", "replay_sessions",
                 "unavailable_windows"}


def new_partition(**config):
    clock = Clock()
    return Partition("3", make_config(**config), clock), clock


def test_manifest_has_exactly_the_contract_shape_and_is_json():
    part, clock = new_partition()
    part.leader, part.routing_epoch = "ceptra-2", 7
    part.set_bundles(gaming_bundle(), None)
    part.append(event(1, ts=clock.now - S))
    part.apply_pending()
    manifest = part.manifest()
    assert set(manifest) == MANIFEST_KEYS
    json.dumps(manifest, allow_nan=False)
    assert manifest["part_id"] == "3" and manifest["leader"] == "ceptra-2" and manifest["routing_epoch"] == 7
    assert (manifest["commit_index"], manifest["applied_index"], manifest["wal_first_index"],
            manifest["wal_last_index"]) == (1, 1, 1, 1)
    assert manifest["def_version"] == 1 and manifest["ingress_gate"] == "open" and manifest["warmup"] is False
    assert set(manifest["finalized_horizon_ts_ns"]) == {"anti_cheat_flags", "flag_baseline"}


def test_readiness_reasons_follow_faults_and_clear():
    part, clock = new_partition()
    assert part.readiness() == {"ready": True, "reasons": [],
                                "metrics": {"apply_lag_ms": 0.0, "replication_lag_ms": 0}}
    part.set_replication_lag_ms(400)
    assert part.readiness()["reasons"] == ["replication_lag"]
    part.set_replication_lag_ms(0)
    part.set_bundles(None, gaming_bundle())
    part.set_shadow_state("Replaying")
    assert part.readiness()["reasons"] == ["definition_warmup_pending"]
    part.set_shadow_state("Ready")
    assert part.readiness()["ready"] is True
    part.set_outage(clock.now, clock.now + 5 * S)
    refused = part.append(event(1))
    assert (refused["status"], refused["cep_status_reason"]) == ("PermanentDurability", "PERMANENT_DURABILITY")
    assert part.readiness()["reasons"] == ["durability_fence"]
    assert part.manifest()["unavailable_windows"] == [{"start_ts_ns": clock.now, "end_ts_ns": clock.now + 5 * S}]
    clock.now += 6 * S
    assert part.append(event(1, ts=clock.now - S))["status"] == "Healthy"
    assert part.readiness()["ready"] is True


def test_checkpoint_age_reason_and_automatic_checkpoints_trim_the_wal():
    part, clock = new_partition(checkpoint_full_interval_ms=15000, checkpoint_retained_fulls=1)
    part.auto_checkpoint = False
    clock.now += 31 * S
    assert part.readiness()["reasons"] == ["checkpoint_age"]
    assert part.manifest()["checkpoint"] == {"full_index": 0, "age_ms": 31000, "event_ts_high_ns": 0}
    part.auto_checkpoint = True
    for i in range(10):
        part.append(event(i, ts=clock.now - S))
    part.apply_pending()                                # takes the due checkpoint
    manifest = part.manifest()
    assert manifest["checkpoint"] == {"full_index": 10, "age_ms": 0, "event_ts_high_ns": clock.now - S}
    assert manifest["wal_first_index"] == 11 and manifest["wal_last_index"] == 10
    assert part.readiness()["ready"] is True
    assert part.wal_entries(1) == []


def test_compact_reports_folds_and_keeps_totals():
    part, clock = new_partition(raw_retention_ms=60000, correction_horizon_ms=36000000)
    for i in range(40):
        part.append(event(i, ts=clock.now - i * 300 * S))
    part.apply_pending()
    before = part.store.totals()
    result = part.compact()
    assert result["folded_panes"] > 0 and result["duration_ms"] >= 0
    assert part.store.totals() == before
    assert part.compaction_runs_total == 1
    assert part.metrics_snapshot()["metrics"]["anti_cheat_flags_total"]["compacted"]


def test_finalized_horizon_index():
    part, clock = new_partition(lateness_allowance_ms=0, watermark_guard_ms=0, correction_horizon_ms=1000)
    for i in range(5):
        part.append(event(i, ts=clock.now - (10 - i) * S))
    part.apply_pending()                              # WM = max ts = now - 6 s; horizon now - 7 s
    assert part.finalized_horizon_index() == 3        # entries at now-10..now-8 s are before the horizon
    assert part.manifest()["finalized_horizon_index"] == 3


def test_watermark_stall_after_two_lateness_allowances_of_flat_horizon():
    # §3: the finalized horizon flat for more than 2 x L while events that feed a metric apply
    part, clock = new_partition(lateness_allowance_ms=5000, watermark_guard_ms=0, correction_horizon_ms=1000)
    part.append(event(1, ts=clock.now - S))
    part.apply_pending()
    for step in range(4):        # old events: the newest event time, hence the horizon, stays put
        clock.now += 2 * S
        part.append(event(10 + step, ts=START - 20 * S))
        part.apply_pending()
    assert part.finalized_horizon_stall() is False    # flat for 8 s <= 2 x L
    assert "watermark_stall" not in part.readiness()["reasons"]
    clock.now += 3 * S
    part.append(event(20, ts=START - 20 * S))
    part.apply_pending()
    assert part.finalized_horizon_stall() is True     # 11 s
    assert "watermark_stall" in part.readiness()["reasons"]
    part.append(event(300, ts=clock.now - S))
    part.apply_pending()
    assert part.finalized_horizon_stall() is False    # the horizon moved


def test_events_no_metric_reads_never_raise_a_stall():
    part, clock = new_partition()
    for i in range(180):                              # 3 minutes of plain events (no metric in the payload)
        clock.now += S
        part.append(event(i, ts=clock.now - S, payload={"kind": "plain"}))
        part.apply_pending()
        assert part.finalized_horizon_stall() is False
    assert part.readiness()["ready"] is True


def test_wal_entries_and_restore_rebuild_same_state_and_dedup():
    part, clock = new_partition()
    part.set_bundles(gaming_bundle(), None)
    for i in range(20):
        part.append(event(i, ts=clock.now - (30 - i) * S))
    part.append(event(99, flags=["REPLAY"], replay_session="run/3", replay_seq=5))
    part.apply_pending()
    saved = json.loads(json.dumps(part.wal_entries(1)))
    assert [e["index"] for e in saved] == list(range(1, 22))
    assert part.wal_entries(20)[0]["index"] == 20
    other = Partition("3", KnobView(part.config.config), clock)
    other.set_bundles(gaming_bundle(), None)
    other.restore(saved, json.loads(json.dumps(part.manifest())))
    assert other.metrics_snapshot() == part.metrics_snapshot()
    assert other.manifest() == part.manifest() | {"leader": other.leader}
    assert other.append(event(4))["duplicate"] is True
    assert other.append(event(98, flags=["REPLAY"], replay_session="run/3", replay_seq=5))["duplicate"] is True
    assert other.append(event(21))["index"] == 22


def test_config_change_is_picked_up_without_restart():
    part, clock = new_partition()
    part.apply_capacity = 1000.0
    patch(part.config, max_future_skew_ms=60000)
    assert part.append(event(1, ts=clock.now + 30 * S))["status"] == "Healthy"
    patch(part.config, partition_flow={"max_events": 1})
    assert part.append(event(2))["cep_status_reason"] == "TRANSIENT_BACKPRESSURE"
    part.apply_pending()
    assert part.append(event(2))["status"] == "Healthy"
    assert part.stats()["queue_depth"] == 1


def test_unlimited_apply_capacity_drains_a_full_queue_instead_of_refusing():
    part, clock = new_partition(partition_flow={"max_events": 2})
    statuses = [part.append(event(i))["status"] for i in range(5)]
    assert statuses == ["Healthy"] * 5
    assert part.applied_index == 4 and part.queue_depth() == 1
    stats = part.stats()
    assert (stats["appended_total"], stats["applied_total"], stats["duplicates_total"]) == (5, 4, 0)
    json.dumps(stats, allow_nan=False)


def test_restore_tolerates_repeated_and_unparseable_entries():
    part, clock = new_partition()
    for i in range(3):
        part.append(event(i))
    entries = part.wal_entries(1)
    damaged = entries + [entries[-1], {"index": 4, "term": 1, "msg": {"event_id": 5}}]
    other, _ = new_partition()
    other.restore(damaged)
    assert (other.commit_index, other.applied_index, other.applied_total) == (3, 3, 3)
    assert other.append(event(2))["duplicate"] is True


def test_raising_correction_horizon_for_a_backfill_is_not_a_stall():
    part, clock = new_partition(lateness_allowance_ms=30000, watermark_guard_ms=0, correction_horizon_ms=1000)
    part.append(event(1, ts=clock.now - S))
    part.apply_pending()
    patch(part.config, correction_horizon_ms=7 * 24 * 3600 * 1000)   # horizon moves back a week
    for step in range(10):                                          # 100 s of historic events
        clock.now += 10 * S
        part.append(event(10 + step, ts=START - 3600 * S + step * S))
        part.apply_pending()
        if step == 0:
            assert part.finalized_horizon_stall() is False
    assert part.late_total == {}
    assert part.finalized_horizon_stall() is True                  # flat again for > 2 x L: a real stall


def test_replay_without_checkpoint_rebuilds_from_the_first_wal_entry():
    part, clock = new_partition()
    for i in range(7):
        part.append(event(i))
    part.apply_pending()
    expected = part.metrics_snapshot()
    assert part.replay_from_checkpoint(100) == {"from_index": 0, "to_index": 7, "replayed_index": 7, "done": True}
    assert part.metrics_snapshot() == expected and part.wal_replays_total == 1


def test_stall_clears_when_applies_stop():
    part, clock = new_partition()
    part.append(event(1, ts=clock.now - S))
    part.apply_pending()
    for step in range(8):
        clock.now += 10 * S
        part.append(event(10 + step, ts=START - 2 * S))
        part.apply_pending()
    assert part.finalized_horizon_stall() is True
    clock.now += 61 * S
    part.tick()
    assert part.finalized_horizon_stall() is False


def test_define_activate_records_the_barrier_without_counting_an_event():
    part, clock = new_partition()
    old, new = gaming_bundle(), gaming_bundle()
    new.def_version, new.bundle_id = 2, "fake@2"
    part.set_bundles(old, new)
    for i in range(4):
        part.append(event(i, ts=clock.now - S))
    part.apply_pending(max_events=3)                  # one entry still queued at the switch
    counters = (part.commit_index, part.applied_index, part.appended_total, part.applied_total, part.skipped_total)
    assert counters == (4, 3, 4, 3, 0)
    assert part.define_activate(new) == 4             # the commit index at the switch
    assert (part.commit_index, part.applied_index, part.appended_total, part.applied_total,
            part.skipped_total) == counters
    assert part.active_bundle is new and part.shadow_bundle is None and part.manifest()["def_version"] == 2
    assert part.activations[-1]["index"] == 4 and part.activations[-1]["bundle_id"] == "fake@2"
    assert part.wal_entries()[-1]["index"] == 4        # no control entry in the WAL
    assert part.append(event(9, ts=clock.now - S))["index"] == 5
    assert part.apply_pending() == 2 and (part.applied_index, part.applied_total) == (5, 5)
    part.wipe()                                        # a wiped partition is a new replica
    assert part.activations == []


def test_a_large_wal_truncation_is_spread_over_housekeeping_calls():
    # Freeing every entry a checkpoint lets go of at once stalled the whole lab; the
    # truncation goes WAL_TRUNCATE_STEP entries at a time and tick() finishes it.
    from ceptra_lab.partition import WAL_TRUNCATE_STEP
    part, clock = new_partition(checkpoint_full_interval_ms=15000, checkpoint_retained_fulls=1)
    part.auto_checkpoint = False
    total = 2 * WAL_TRUNCATE_STEP + 100
    for i in range(total):
        part.append(event(i, ts=clock.now - S))
    part.apply_pending()
    part.checkpoint()
    assert part.manifest()["wal_first_index"] == WAL_TRUNCATE_STEP + 1
    part.tick()
    assert part.manifest()["wal_first_index"] == 2 * WAL_TRUNCATE_STEP + 1
    part.tick()
    manifest = part.manifest()
    assert (manifest["wal_first_index"], manifest["wal_last_index"]) == (total + 1, total)
    assert manifest["checkpoint"]["full_index"] == total
    part.append(event(total, ts=clock.now - S))
    part.apply_pending()
    assert part.manifest()["applied_index"] == total + 1


def test_follower_model_lags_behind_a_burst_and_catches_up():
    part, clock = new_partition()
    part.replication_capacity = 100.0                 # events/s the follower takes
    for i in range(50):
        part.append(event(i, ts=clock.now - S))
    part.apply_pending()
    assert part.follower_lag_ms() == 0.0              # nothing aged yet
    for _ in range(4):                                # 200 ms: ~20 of 50 entries replicated
        clock.now += 50 * MS
        part.replicate(clock.now)
    assert 15 <= part.replicated_index <= 25 and part.follower_lag_ms() == 200.0
    assert "replication_lag" not in part.readiness()["reasons"]
    clock.now += 100 * MS
    part.replicate(clock.now)
    assert part.follower_lag_ms() == 300.0 and "replication_lag" in part.readiness()["reasons"]
    for _ in range(20):
        clock.now += 50 * MS
        part.replicate(clock.now)
    assert part.replicated_index == 50 and part.follower_lag_ms() == 0.0
    part.set_replication_lag_ms(40)                   # the fault adds to the model
    assert part.follower_lag_ms() == 40.0
