"""rules.py units: window values (sliding equals recomputed), derived_event_id, helpers, the sink."""
from __future__ import annotations

import random

from ceptra_lab.aggregates import AggregateStore
from ceptra_lab.config_knobs import DEFAULT_CONFIG, KnobView
from ceptra_lab.rules import HELPERS, DerivedEventSink, _window, derived_event_id

MS = 1_000_000
S = 1_000_000_000
NOW = 1_800_000_000 * S


class Query:
    def __init__(self, metric, function, range_ms, source="m_total", by=("player_id",), aggregator="sum"):
        self.metric, self.function, self.range_ms, self.source_metric = metric, function, range_ms, source
        self.by_labels, self.aggregator, self.quantile, self.matchers, self.upgrade = by, aggregator, 0.5, [], True

    def matches(self, name, labels):
        return name == self.source_metric

    def lane_of(self, labels):
        return ",".join(f"{label}={labels.get(label, '')}" for label in self.by_labels)


class Bundle:
    def __init__(self, queries):
        self.queries = queries


def test_a_sliding_window_equals_the_window_recomputed_from_the_panes():
    config = dict(DEFAULT_CONFIG, correction_horizon_ms=10 * 3600_000, lateness_allowance_ms=3600_000)
    queries = [Query("total", "increase", 15_000), Query("mean", "avg_over_time", 15_000),
               Query("top", "max_over_time", 15_000)]
    store = AggregateStore(KnobView(config), "0")
    store.set_bundle(Bundle(queries))
    rng = random.Random(5)
    ts = NOW - 600 * S
    for step in range(3000):
        ts += rng.randrange(0, 400) * MS
        if rng.random() < 0.05:                       # now and then an older pane changes
            event_ts = ts - rng.randrange(1, 20) * S
        else:
            event_ts = ts
        store.apply(event_ts, "m_total", {"player_id": "p"}, float(rng.randrange(10)), ts)
        for query in queries:
            metric = store.metrics[query.metric]
            end = ts - ts % metric.pane_ns + metric.pane_ns
            cached = metric.win_cache.get("player_id=p")
            result, sums = _window(metric, query, "player_id=p", end, query.range_ms * MS, cached)
            metric.win_cache["player_id=p"] = (end, result, sums)
            fresh, _ = _window(metric, query, "player_id=p", end, query.range_ms * MS, None)
            assert result == fresh, (step, query.metric)


def test_derived_event_id_is_a_stable_64_bit_hash_of_its_five_fields():
    first = derived_event_id("0", 17, 2, "phase/rule", "kafkas://alerts")
    assert first == derived_event_id("0", 17, 2, "phase/rule", "kafkas://alerts") and len(first) == 16
    others = {derived_event_id(*fields) for fields in [("1", 17, 2, "phase/rule", "kafkas://alerts"),
                                                      ("0", 18, 2, "phase/rule", "kafkas://alerts"),
                                                      ("0", 17, 3, "phase/rule", "kafkas://alerts"),
                                                      ("0", 17, 2, "phase/other", "kafkas://alerts"),
                                                      ("0", 17, 2, "phase/rule", "kafkas://other")]}
    assert first not in others and len(others) == 5


def test_helpers_answer_double_when_any_argument_is_one():
    assert HELPERS["max"](1, 0.5) == 1.0 and isinstance(HELPERS["max"](1, 0.5), float)
    assert HELPERS["max"](1, 2) == 2 and isinstance(HELPERS["max"](1, 2), int)
    assert HELPERS["clamp"](5, 0, 3) == 3 and HELPERS["safe_div"](1, 0, -1) == -1
    assert HELPERS["coalesce"](None, 4) == 4


def test_the_sink_drops_copies_by_derived_event_id_and_by_external_decision_id():
    sink = DerivedEventSink()
    sink.register_decisions(["d-1"])
    assert sink.deliver({"derived_event_id": "a"}) is True
    assert sink.deliver({"derived_event_id": "a"}) is False
    assert sink.deliver({"derived_event_id": "b", "external_decision_id": "d-1"}) is False
    assert sink.deliver({"derived_event_id": "c", "external_decision_id": "d-2"}) is True
    assert sink.deliver({"derived_event_id": "d", "external_decision_id": "d-2"}) is False
    assert sink.document() == {"received": 5, "delivered": 2, "duplicate_derived_event_id": 1,
                               "duplicate_external_decision_id": 2, "external_decisions_registered": 1}
