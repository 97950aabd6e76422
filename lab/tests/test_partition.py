"""Partition engine semantics (contract section 5), with a fake clock and fake compiled queries."""
from __future__ import annotations

import copy
import random

import pytest

from ceptra_lab.aggregates import canonical_json
from ceptra_lab.config_knobs import DEFAULT_CONFIG, KnobView
from ceptra_lab.applier import apply_entries
from ceptra_lab.partition import Partition

MS = 1_000_000
S = 1_000_000_000
START = 1_700_000_000 * S


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now


class FakeQuery:
    """The CompiledQuery surface the engine uses (equality matchers only)."""

    def __init__(self, metric, source_metric, matchers=(), by_labels=(), function="sum_over_time"):
        self.metric, self.source_metric, self.function = metric, source_metric, function
        self.matchers, self.by_labels = list(matchers), tuple(by_labels)

    def matches(self, name, labels):
        return name == self.source_metric and all(labels.get(k) == v for k, _op, v in self.matchers)

    def lane_of(self, labels):
        return ",".join("%s=%s" % (k, labels.get(k, "")) for k in self.by_labels)


class FakeBundle:
    def __init__(self, queries, def_version=1):
        self.queries, self.def_version, self.policy_version = queries, def_version, 1
        self.bundle_id, self.needs_replay = "fake@%d" % def_version, False


def gaming_bundle():
    ranked = [("queue", "=", "ranked")]
    return FakeBundle([
        FakeQuery("anti_cheat_flags", "anti_cheat_flags_total", ranked, ("player_id",), "increase"),
        FakeQuery("flag_baseline", "anti_cheat_flags_total", ranked, ("player_id",), "avg_over_time"),
        FakeQuery("latency_p95", "matchmaking_latency_seconds", ranked, (), "quantile_over_time"),
    ])


def make_config(**overrides):
    config = copy.deepcopy(DEFAULT_CONFIG)
    config.update(overrides)
    return KnobView(config)


def patch(view, **changes):
    new = copy.deepcopy(view.config)
    new.update(changes)
    view.update(new)


def event(i, ts=None, metric="anti_cheat_flags_total", value=1.0, player=None, **extra):
    player = player or "player-%d" % (i % 5)
    msg = {"event_id": "e-%d" % i, "partition_key": player, "ts_ns": START - S if ts is None else ts,
           "schema_key": "metric_sample_v1",
           "payload": {"metric": metric, "labels": {"queue": "ranked", "player_id": player}, "value": value}}
    msg.update(extra)
    return msg


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def part(clock):
    return Partition("0", make_config(), clock)


def test_append_assigns_index_and_term_and_applies_in_order(part):
    responses = [part.append(event(i)) for i in range(3)]
    assert [r["index"] for r in responses] == [1, 2, 3]
    assert all(r["status"] == "Healthy" and r["term"] == 1 and r["credit_hint"] == "Recover" for r in responses)
    assert responses[0]["cep_credit_hint"] == {"client_window_size": 1024, "retry_backoff_ms": 0}
    assert part.queue_depth() == 3
    assert part.apply_pending() == 3
    assert (part.applied_index, part.appended_total, part.applied_total) == (3, 3, 3)
    assert part.metrics_snapshot()["metrics"]["__events__"]["raw"][""]


def test_duplicate_event_id_returns_prior_outcome_and_applies_nothing(part, clock):
    first = part.append(event(1))
    part.apply_pending()
    digest = part.metrics_snapshot()["digest"]
    again = part.append(event(1, value=99.0))
    assert again["duplicate"] is True and again["status"] == "Healthy"
    assert (again["index"], again["term"]) == (first["index"], first["term"])
    part.apply_pending()
    assert part.commit_index == 1 and part.duplicates_total == 1
    assert part.metrics_snapshot()["digest"] == digest
    # a retry after client_retry_window_s is refused (§3): the entry is not finalized, so kept
    clock.now += 1801 * S
    later = part.append(event(1, ts=clock.now - S))
    assert (later["status"], later["cep_status_reason"]) == ("PermanentDurability", "PERMANENT_RETRY_EXPIRED")
    assert part.retry_expired == [{"event_id": "e-1", "part_id": part.part_id, "received_ts_ns": clock.now}]
    assert part.commit_index == 1 and part.retry_expired_total == 1


def test_dedup_capacity_full_answers_transient_dedup_capacity(clock):
    part = Partition("0", make_config(dedup_capacity_per_partition=2, lateness_allowance_ms=0,
                                      correction_horizon_ms=1000), clock)
    assert part.append(event(1, ts=START - 100 * S))["status"] == "Healthy"
    assert part.append(event(2, ts=START - S))["status"] == "Healthy"
    part.apply_pending()
    refused = part.append(event(3))
    assert (refused["status"], refused["cep_status_reason"]) == ("TransientBackpressure", "DEDUP_CAPACITY")
    assert part.dedup_capacity_exhausted_total == 1
    assert part.manifest()["dedup"] == {"capacity": 2, "occupancy": 2}
    # an entry is evictable once it is older than client_retry_window_s AND finalized (§3):
    # entry 1 is behind the horizon (now - 2 s), entry 2 is not
    clock.now += 1801 * S
    assert part.append(event(3, ts=clock.now - S))["status"] == "Healthy"
    assert part.manifest()["dedup"]["occupancy"] == 2


def test_replay_session_drops_repeated_seqs(part):
    def replay(seq, eid):
        return event(seq, flags=["REPLAY"], replay_session="run-1/0", replay_seq=seq, event_id=eid)

    assert [part.append(replay(s, "h-%d" % s))["status"] for s in (1, 2, 3)] == ["Healthy"] * 3
    dup = part.append(replay(2, "h-2"))
    assert dup["duplicate"] is True and dup["status"] == "Healthy"
    # a repeated seq is dropped even with a different event_id (idempotent producer)
    assert part.append(replay(3, "other-id"))["duplicate"] is True
    assert part.append(replay(4, "h-4"))["index"] == 4
    part.apply_pending()
    assert part.applied_total == 4
    assert part.manifest()["replay_sessions"] == {"run-1/0": {"last_seq": 4}}
    # sessions add seq dedup on top of the event_id table, they do not replace it
    assert part.manifest()["dedup"]["occupancy"] == 4


def test_late_events_dropped_then_land_after_raising_lateness_and_horizon(clock):
    view = make_config(lateness_allowance_ms=1000, watermark_guard_ms=0, correction_horizon_ms=2000)
    part = Partition("0", view, clock)
    part.append(event(1, ts=clock.now - S))
    part.apply_pending()                        # WM = now - 2 s, finalized before now - 4 s
    old = [event(100 + i, ts=clock.now - 60 * S - i * MS) for i in range(3)]
    for msg in old:
        assert part.append(msg)["status"] == "Healthy"   # committed; dropped at apply
    part.apply_pending()
    assert part.late_total[("anti_cheat_flags_total", "FINALIZED")] == 3
    assert part.metrics_snapshot()["late"] == {"anti_cheat_flags_total": {"FINALIZED": 3}}
    horizon = part.manifest()["finalized_horizon_ts_ns"]["anti_cheat_flags_total"]
    assert horizon == clock.now - 4 * S
    # operator widens the mutable window (per-metric override beats the top level)
    patch(view, metrics={"anti_cheat_flags_total": {"lateness_allowance_ms": 120000,
                                                     "correction_horizon_ms": 600000}})
    for i, msg in enumerate(old):
        part.append(dict(msg, event_id="again-%d" % i))
    part.apply_pending()
    assert part.late_total[("anti_cheat_flags_total", "FINALIZED")] == 3
    counts = sum(p["count"] for p in part.metrics_snapshot()["metrics"]["anti_cheat_flags_total"]["raw"][""].values())
    assert counts == 4


def test_permuted_event_set_gives_bit_identical_snapshot(clock):
    rng = random.Random(42)
    events = []
    for i in range(300):
        metric = rng.choice(["anti_cheat_flags_total", "matchmaking_latency_seconds", "other"])
        events.append(event(i, ts=clock.now - rng.randrange(0, 600_000) * MS, metric=metric,
                            value=rng.choice([0.1, 0.2, 0.3, 1e16, -1e16, 3.5, -0.0, 7])))
    digests = set()
    for seed in range(5):
        order = events[:]
        random.Random(seed).shuffle(order)
        part = Partition(str(seed), make_config(), clock)
        part.set_bundles(gaming_bundle(), None)
        for i, msg in enumerate(order):
            assert part.append(msg)["status"] == "Healthy"
            if i % 37 == 0:
                part.apply_pending()
        part.apply_pending()
        snap = part.metrics_snapshot()
        assert snap["late"] == {}
        digests.add((snap["digest"], canonical_json(snap["metrics"])))
    assert len(digests) == 1
    metrics = snap["metrics"]
    assert set(metrics) == {"anti_cheat_flags", "flag_baseline", "latency_p95", "__events__"}
    assert all(lane.startswith("player_id=") for lane in metrics["anti_cheat_flags"]["raw"])
    pane = next(iter(metrics["latency_p95"]["raw"][""].values()))
    assert pane["values"] == sorted(pane["values"])


def test_backpressure_when_commit_apply_queue_full(clock):
    view = make_config(partition_flow={"max_events": 4, "max_bytes": 16777216, "max_event_bytes": 1048576})
    part = Partition("0", view, clock, apply_capacity=100.0)
    hints = [part.append(event(i))["cep_credit_hint"]["client_window_size"] for i in range(4)]
    assert hints == [3, 2, 1, 1]
    refused = part.append(event(9))
    assert (refused["status"], refused["cep_status_reason"]) == ("TransientBackpressure", "TRANSIENT_BACKPRESSURE")
    assert refused["credit_hint"] == "Hold"
    assert refused["cep_credit_hint"]["client_window_size"] == 1
    assert refused["cep_credit_hint"]["retry_backoff_ms"] >= 25
    assert part.commit_index == 4                      # nothing committed for the refused event
    clock.now += 300 * MS
    assert part.apply_lag_ms() == pytest.approx(300.0)
    assert "apply_lag" in part.readiness()["reasons"]
    assert part.apply_pending(max_events=2) == 2 and part.queue_depth() == 2
    assert part.append(event(9))["status"] == "Healthy"  # the same event_id retried: accepted
    part.apply_pending()
    assert part.apply_lag_ms() == 0.0 and "apply_lag" not in part.readiness()["reasons"]


def test_wipe_enters_warmup_and_gate_admits_only_replay(part, clock):
    part.append(event(1))
    part.apply_pending()
    part.wipe()
    manifest = part.manifest()
    assert (manifest["commit_index"], manifest["applied_index"], manifest["warmup"]) == (0, 0, True)
    assert manifest["ingress_gate"] == "warmup" and manifest["dedup"]["occupancy"] == 0
    assert part.metrics_snapshot()["metrics"] == {}
    assert part.readiness()["reasons"] == ["warmup"]
    live = part.append(event(2))
    assert (live["status"], live["cep_status_reason"]) == ("TransientBackpressure", "TRANSIENT_WARMUP")
    historic = part.append(event(1, flags=["REPLAY"], replay_session="r/0", replay_seq=1))
    assert historic["status"] == "Healthy" and historic["index"] == 1 and historic["term"] == 2
    patch(part.config, partitions={"0": {"ingress_gate": "open"}})
    assert part.append(event(2))["status"] == "Healthy"
    patch(part.config, partitions={})                  # gate key removed: warmup stays cleared
    assert part.ingress_gate() == "open"
    patch(part.config, partitions={"0": {"ingress_gate": "warmup"}})
    assert part.append(event(3))["cep_status_reason"] == "TRANSIENT_WARMUP"


def test_future_skew_rejected_permanently_and_counted(part, clock):
    response = part.append(event(1, ts=clock.now + 6 * S))
    assert (response["status"], response["cep_status_reason"]) == ("PermanentDurability", "FUTURE_SKEW")
    assert part.late_total == {("anti_cheat_flags_total", "FUTURE_SKEW"): 1}
    assert part.commit_index == 0
    assert part.append(event(2, ts=clock.now + 4 * S))["status"] == "Healthy"


@pytest.mark.parametrize("msg, fragment", [
    ("not an object", "JSON object"),
    ({"partition_key": "k", "ts_ns": 1, "payload": {}}, "event_id"),
    ({"event_id": 7, "partition_key": "k", "ts_ns": 1, "payload": {}}, "event_id"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": "1", "payload": {}}, "ts_ns"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": True, "payload": {}}, "ts_ns"),
    ({"event_id": "a", "ts_ns": 1, "payload": {}}, "partition_key"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": []}, "payload"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": {"metric": "m", "value": "x"}}, "payload.value"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": {"metric": "m", "value": float("nan")}}, "finite"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1,
      "payload": {"metric": "m", "value": 1, "labels": {"q": 1}}}, "payload.labels.q"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": {}, "flags": "REPLAY"}, "flags"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": {}, "flags": ["REPLAY"],
      "replay_session": "s"}, "replay_seq"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload": {}, "part_id": "5"}, "part_id"),
    ({"event_id": "a", "partition_key": "k", "ts_ns": 1, "payload_b64": "!!"}, "base64"),
])
def test_malformed_messages_are_permanent_payload_and_change_nothing(part, msg, fragment):
    response = part.append(msg)
    assert (response["status"], response["cep_status_reason"]) == ("PermanentDurability", "PERMANENT_PAYLOAD")
    assert fragment in response["error"]
    assert part.commit_index == 0 and part.manifest()["dedup"]["occupancy"] == 0


def test_b64_variants_and_oversized_events(part):
    import base64
    import json
    msg = {"event_id": "b", "partition_key_b64": base64.b64encode(b"player-1").decode(), "ts_ns": START - S,
           "payload_b64": base64.b64encode(json.dumps({"metric": "m", "value": 2}).encode()).decode()}
    assert part.append(msg)["status"] == "Healthy"
    big = event(2, payload={"metric": "m", "value": 1.0, "blob": "x" * 1_100_000})
    response = part.append(big)
    assert response["cep_status_reason"] == "PERMANENT_PAYLOAD" and "max_event_bytes" in response["error"]
    assert part.append(event(3), raw_size=2_000_000)["cep_status_reason"] == "PERMANENT_PAYLOAD"
    assert part.commit_index == 1


def test_checkpoint_then_replay_from_checkpoint_reproduces_snapshot(part, clock):
    part.set_bundles(gaming_bundle(), None)
    for i in range(50):
        part.append(event(i, ts=clock.now - (100 - i) * S))
    part.apply_pending()
    part.checkpoint()
    for i in range(50, 120):
        part.append(event(i, ts=clock.now - (100 - i % 90) * S, metric="matchmaking_latency_seconds",
                          value=i / 10))
    part.apply_pending()
    expected = part.metrics_snapshot()
    steps = []
    while True:
        step = part.replay_from_checkpoint(max_entries=25)
        steps.append(step)
        if step["done"]:
            break
    assert steps[0]["from_index"] == 50 and steps[-1]["replayed_index"] == 120
    assert [s["replayed_index"] for s in steps] == [75, 100, 120]
    assert part.metrics_snapshot() == expected
    assert part.manifest()["checkpoint"] == {"full_index": 50, "age_ms": 0, "event_ts_high_ns": START - 51 * S}


def test_replay_job_builds_the_shadow_bundles_state_from_the_checkpoint(part, clock):
    for i in range(10):
        part.append(event(i))
    part.apply_pending()
    part.checkpoint()
    part.append(event(10))
    part.apply_pending()
    new = gaming_bundle()
    part.set_bundles(None, new)                      # warming; its metrics start empty here
    part.append(event(11))
    part.apply_pending()
    assert part.applier.shadow.totals()["anti_cheat_flags"]["count"] == 1
    assert part.replay_from_checkpoint(1000)["done"] is True
    assert part.applier.shadow.totals()["anti_cheat_flags"]["count"] == 2     # entries 11 and 12
    assert "anti_cheat_flags" not in part.metrics_snapshot()["metrics"]      # still on the old version
    part.define_activate(new)
    part.apply_pending()
    assert part.metrics_snapshot()["metrics"]["anti_cheat_flags"]["raw"]


def test_per_key_last_event_wins_skips_entries_not_above_key_index(part):
    for i in range(3):
        part.append(event(i, player="p"))
    applier = part.applier.copy()
    applier.key_last = {"p": 2}
    applied, skipped, _ = apply_entries(part._wal, 0, 3, applier)
    assert (applied, skipped) == (1, 2) and applier.key_last == {"p": 3}
