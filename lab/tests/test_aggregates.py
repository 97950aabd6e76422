"""Monoid aggregates: exact order-independent sums, tiers, compaction, export."""
from __future__ import annotations

import math
import random

from ceptra_lab.aggregates import (COMPACTED_PANE_MS, EVENTS_METRIC, AggregateStore, digest_of,
                                   exact_units, export_state, merge_state, new_state, units_to_float)
from ceptra_lab.config_knobs import KnobView

MS = 1_000_000
NOW = 1_700_000_000_000 * MS


def test_exact_sum_matches_fsum_in_any_order():
    values = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3, 1e-300, -2.5e-310, 3.0, 7e15, -7e15 + 0.5]
    expected = math.fsum(values)
    assert sum(values) != expected   # the naive sum really is order/rounding dependent here
    for seed in range(20):
        shuffled = values[:]
        random.Random(seed).shuffle(shuffled)
        total = sum(exact_units(v) for v in shuffled)
        assert units_to_float(total) == expected


def test_merge_state_is_the_monoid_of_single_updates():
    a = new_state(3.0, True)
    for v in (1.0, 5.0):
        merge_state(a, new_state(v, True))
    b = new_state(5.0, True)
    merge_state(b, new_state(1.0, True))
    merge_state(b, new_state(3.0, True))
    assert export_state(a) == export_state(b) == {"count": 3, "sum": 9.0, "min": 1.0, "max": 5.0,
                                                   "values": [1.0, 3.0, 5.0]}
    assert export_state(new_state(None, False)) == {"count": 1}


def _store(config=None):
    return AggregateStore(config or KnobView(), "0")


def test_store_routes_by_payload_metric_without_bundle_and_counts_events():
    store = _store()
    store.apply(NOW - 1000 * MS, "cpu", {"host": "a"}, 2.0, NOW)
    store.apply(NOW - 1000 * MS, "cpu", {"host": "b"}, 4.0, NOW)
    store.apply(NOW - 1000 * MS, None, {}, None, NOW)
    out = store.export()
    assert set(out) == {"cpu", EVENTS_METRIC}
    (pane,) = out["cpu"]["raw"][""].values()
    assert pane == {"count": 2, "sum": 6.0, "min": 2.0, "max": 4.0}
    (events,) = out[EVENTS_METRIC]["raw"][""].values()
    assert events == {"count": 3}


def test_compaction_folds_old_panes_and_keeps_totals():
    config = KnobView()
    config.update(dict(config.config, raw_retention_ms=60_000, correction_horizon_ms=10 * 3600_000))
    store = _store(config)
    rng = random.Random(7)
    # three hours of events, some older than raw retention
    for _ in range(500):
        ts = NOW - rng.randrange(0, 3 * 3600_000) * MS
        store.apply(ts, "latency", {}, rng.random() * 100, NOW)
    before = store.totals()
    folded = store.compact(NOW)
    after = store.totals()
    assert folded > 0
    assert after == before
    out = store.export()
    assert out["latency"]["compacted"][""]
    for start in out["latency"]["compacted"][""]:
        assert int(start) % (COMPACTED_PANE_MS * MS) == 0
    for start in out["latency"]["raw"].get("", {}):
        assert int(start) + 250 * MS > NOW - 60_000 * MS   # only recent panes stay raw
    assert store.compact(NOW) == 0                         # idempotent


def test_compaction_expires_what_lies_before_compacted_retention():
    config = KnobView()
    day_ms = 86_400_000
    config.update(dict(config.config, raw_retention_ms=3_600_000, compacted_retention_ms=2 * day_ms,
                       lateness_allowance_ms=10 * day_ms, correction_horizon_ms=10 * day_ms))
    store = _store(config)
    for days_ago in (0.5, 1.5, 3, 5):                      # two of them are older than R_compact (2 d)
        store.apply(NOW - int(days_ago * day_ms) * MS, "latency", {}, days_ago, NOW)
    store.compact(NOW)
    kept = store.export()["latency"]
    values = sorted(state["sum"] for tier in ("raw", "compacted") for state in kept[tier].get("", {}).values())
    assert values == [0.5, 1.5]
    assert store.expired_panes == 2 * 2                    # latency and __events__, two panes each
    config.update(dict(config.config, compacted_retention_ms=10 * day_ms))
    store.apply(NOW - 5 * day_ms * MS, "latency", {}, 5.0, NOW)   # a backfill after raising R_compact stays
    store.compact(NOW)
    assert store.totals()["latency"]["count"] == 3


def test_copy_is_independent_and_digest_is_stable():
    store = _store()
    store.apply(NOW - MS, "m", {}, 1.5, NOW)
    copy = store.copy()
    assert digest_of(copy.export()) == digest_of(store.export())
    store.apply(NOW - MS, "m", {}, 1.5, NOW)
    assert digest_of(copy.export()) != digest_of(store.export())
    assert copy.export()["m"]["raw"][""][str(NOW - MS - (NOW - MS) % (250 * MS))]["count"] == 1


def test_late_event_dropped_for_metric_but_counted_in_events():
    config = KnobView()
    config.update(dict(config.config, correction_horizon_ms=1000, lateness_allowance_ms=0,
                       watermark_guard_ms=0))
    store = _store(config)
    store.apply(NOW, "m", {}, 1.0, NOW)
    store.apply(NOW - 5000 * MS, "m", {}, 1.0, NOW)        # 5 s before WM - C (1 s)
    assert store.late == {("m", "FINALIZED"): 1}
    assert store.totals()["m"]["count"] == 1
    assert store.totals()[EVENTS_METRIC]["count"] == 2
    assert store.export_late() == {"m": {"FINALIZED": 1}}


def test_copies_share_panes_copy_on_write_through_updates_and_compaction():
    config = KnobView()
    config.update(dict(config.config, raw_retention_ms=1000, correction_horizon_ms=10 * 3600_000))
    store = _store(config)
    from ceptra_lab.aggregates import AggregateStore as _AS  # noqa: F401  (same class, explicit)
    store._quantile_metrics = {"q"}
    for i in range(20):
        store.apply(NOW - i * 60_000 * MS, "q", {}, float(i), NOW)
    frozen = store.copy()
    frozen_json = digest_of(frozen.export())
    second = frozen.copy()
    for i in range(20):
        store.apply(NOW - i * 60_000 * MS, "q", {}, float(100 + i), NOW)   # insort into shared lists
    store.compact(NOW)                                                   # merges into shared states
    second.apply(NOW - 5 * MS, "q", {}, 1.0, NOW)
    assert digest_of(frozen.export()) == frozen_json
    assert store.totals()["q"]["count"] == 40 and second.totals()["q"]["count"] == 21
    assert frozen.totals()["q"]["count"] == 20
