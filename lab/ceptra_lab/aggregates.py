"""Monoid aggregate state of one lab partition: per metric, lane and pane, in two tiers.

Each pane holds a monoid state ``[count, exact_sum_units, min, max, values, owner]``:

* the sum is kept EXACTLY as an integer count of 2**-1074 units (every finite double is an
  integer multiple of that), so addition is associative and commutative and the export
  (``units / 2**1074``, which Python rounds correctly) equals ``math.fsum`` of the values,
  bit for bit, whatever the order the values arrived in. This is the same guarantee as
  Shewchuk partials, at the cost of one big-int addition per value;
* ``values`` is the sorted value list, kept only for ``quantile_over_time`` queries;
* the built-in ``__events__`` metric counts every applied event (state without a value);
* ``owner`` makes copies cheap (checkpoints every 30 s must not stall the server): a copy
  shares the pane lists and both stores take a fresh owner token, so whichever store
  mutates a pane first copies it (copy-on-write); a copy costs one dict copy per lane.

Event time: ``pane_start = ts_ns - ts_ns % pane_ns``. Per metric ``m`` the watermark is
``WM(m) = max(previous, min(max_event_ts_seen - L(m), now - G(m)))`` (``max_event_ts_seen``
is partition wide); an event whose pane right edge is not after ``WM(m) - C(m)`` is dropped
for ``m`` and counted as ``(m, "FINALIZED")`` in ``late``. ``now`` is the entry's commit time
as the WAL holds it (the guard floor is sampled once per entry, tagged with its index), and
the knobs are those of the config version in force at the entry's log position
(``set_knobs``): the state is a function of the WAL and the config timeline only, never of
the clock or the config at the time of a replay.

Compaction folds raw panes older than ``raw_retention_ms`` into hourly buckets
(``COMPACTED_PANE_MS``, fixed by the lab: the contract names no knob for it), then expires
what lies wholly before ``compacted_retention_ms`` (``R_compact``, §10: the compacted tier's
retention): such panes and buckets are dropped and counted in ``expired_panes``. So a
backfill of history older than ``R_compact`` is lost at the next compaction unless the
retention was raised first (scenario 3's preflight).
``__events__`` is never dropped as late: it counts what the partition applied.
"""
from __future__ import annotations

import hashlib
import json
from bisect import insort
from heapq import merge as heap_merge
from itertools import count as _counter

EVENTS_METRIC = "__events__"
COMPACTED_PANE_MS = 3600000
FINALIZED = "FINALIZED"

_SCALE_BITS = 1074
_SCALE = 1 << _SCALE_BITS
_NO_WATERMARK = -(1 << 80)
_MS = 1_000_000
_ROUTE_CACHE_LIMIT = 65536
_INF = float("inf")
_owner_tokens = _counter(1)


def exact_units(value: float) -> int:
    """``value`` as an exact integer number of 2**-1074 units (finite floats only)."""
    numerator, denominator = value.as_integer_ratio()
    # denominator is 2**k with k <= 1074, so the shift is exact.
    return numerator << (_SCALE_BITS + 1 - denominator.bit_length())


def units_to_float(units: int) -> float:
    """Correctly rounded float of an exact unit sum (same result as math.fsum)."""
    try:
        return units / _SCALE
    except OverflowError:
        return float("inf") if units > 0 else float("-inf")


def new_state(value: float | None, keep_values: bool, owner: int = 0) -> list:
    """A pane state holding one event (``value`` None: a count-only event)."""
    if value is None:
        return [1, 0, None, None, None, owner]
    return [1, exact_units(value), value, value, [value] if keep_values else None, owner]


def own_state(state: list, owner: int) -> list:
    """A private copy of a shared pane state, stamped with ``owner``."""
    return [state[0], state[1], state[2], state[3], list(state[4]) if state[4] is not None else None, owner]


def merge_state(dst: list, src: list) -> None:
    """Fold monoid state ``src`` into ``dst`` (in place)."""
    dst[0] += src[0]
    dst[1] += src[1]
    if src[2] is not None:
        if dst[2] is None or src[2] < dst[2]:
            dst[2] = src[2]
        if dst[3] is None or src[3] > dst[3]:
            dst[3] = src[3]
    if src[4]:
        dst[4] = list(heap_merge(dst[4] or [], src[4]))


def export_state(state: list) -> dict:
    """JSON form of a pane state (deterministic)."""
    out = {"count": state[0]}
    if state[2] is not None:
        total = units_to_float(state[1])
        # JSON has no infinity: an overflowing exact sum is exported as text.
        out["sum"] = total if total not in (_INF, -_INF) else repr(total)
        out["min"] = state[2]
        out["max"] = state[3]
        if state[4] is not None:
            out["values"] = list(state[4])
    return out


def _copy_tier(tier: dict) -> dict:
    # Shallow: pane states are shared and copied on first write (see the owner token).
    return {lane: dict(panes) for lane, panes in tier.items()}


def _export_tier(tier: dict) -> dict:
    return {lane: {str(start): export_state(s) for start, s in panes.items()}
            for lane, panes in tier.items() if panes}


class MetricAgg:
    """Panes, watermark and cached knobs of one metric."""

    __slots__ = ("name", "keep_values", "raw", "compacted", "wm", "lateness_ns", "guard_ns",
                 "horizon_ns", "pane_ns", "win_cache")

    def __init__(self, name: str, keep_values: bool):
        self.name = name
        self.keep_values = keep_values
        self.raw: dict = {}
        self.compacted: dict = {}
        self.wm = _NO_WATERMARK
        self.lateness_ns = self.guard_ns = self.horizon_ns = 0
        self.pane_ns = 250 * _MS
        self.win_cache: dict = {}     # lane -> (window end, rule input): rules.py; dropped on a change before the end

    def load_knobs(self, config, part_id: str) -> None:
        """Cache L, G, C and the pane size (ns) from the current config."""
        self.lateness_ns = _knob_ns(config, part_id, self.name, "lateness_allowance_ms")
        self.guard_ns = _knob_ns(config, part_id, self.name, "watermark_guard_ms")
        self.horizon_ns = _knob_ns(config, part_id, self.name, "correction_horizon_ms")
        self.pane_ns = max(_MS, _knob_ns(config, part_id, self.name, "pane_size_ms"))
        self.win_cache.clear()

    def copy(self) -> "MetricAgg":
        other = MetricAgg(self.name, self.keep_values)
        other.raw = _copy_tier(self.raw)
        other.compacted = _copy_tier(self.compacted)
        other.wm = self.wm
        other.lateness_ns, other.guard_ns = self.lateness_ns, self.guard_ns
        other.horizon_ns, other.pane_ns = self.horizon_ns, self.pane_ns
        return other

    def advance(self, max_ts: int, now_ns: int) -> None:
        """Move the watermark forward (never back) from the newest event time and the clock."""
        candidate = min(max_ts - self.lateness_ns, now_ns - self.guard_ns)
        if candidate > self.wm:
            self.wm = candidate

    def watermark(self) -> int | None:
        return None if self.wm == _NO_WATERMARK else self.wm

    def horizon(self) -> int | None:
        """Finalized horizon (event time, ns): panes ending at or before it are immutable."""
        return None if self.wm == _NO_WATERMARK else self.wm - self.horizon_ns


def _knob_ns(config, part_id, metric, key) -> int:
    value = config.knob(part_id, metric, key)
    try:
        return int(value) * _MS
    except (TypeError, ValueError):
        from .config_knobs import DEFAULT_CONFIG
        return int(DEFAULT_CONFIG[key]) * _MS


class AggregateStore:
    """All aggregate state of a partition plus the routing of events to metrics."""

    def __init__(self, config, part_id: str):
        self.config = config
        self.part_id = part_id
        self.metrics: dict[str, MetricAgg] = {}
        self.events = MetricAgg(EVENTS_METRIC, False)
        self.late: dict[tuple[str, str], int] = {}
        self.max_ts = _NO_WATERMARK
        self.clock_floor = _NO_WATERMARK              # newest commit time applied (the guard floor's clock)
        self.routed_total = 0                         # events that fed at least one metric
        self.expired_panes = 0                        # panes dropped past compacted_retention_ms
        # rules.py: window values are cached per metric and lane (MetricAgg.win_cache); any
        # change that can alter a cached or memoized window bumps win_epoch
        self.win_epoch = 0
        self.rule_memo: dict = {}
        self._by_source: dict[str, list] | None = None   # None: no bundle, metric = payload.metric
        self._quantile_metrics: set[str] = set()
        self._route_cache: dict = {}
        self._generation = -1
        self.owner = next(_owner_tokens)
        self.refresh_knobs()

    # -- configuration -------------------------------------------------------------------
    def refresh_knobs(self) -> None:
        """Re-read per-metric knobs when the config changed (cheap no-op otherwise)."""
        if self._generation == self.config.generation:
            return
        self._generation = self.config.generation
        self.events.load_knobs(self.config, self.part_id)
        for metric in self.metrics.values():
            metric.load_knobs(self.config, self.part_id)

    def set_bundle(self, bundle) -> None:
        """Route events by the bundle's queries (``None``: one metric per payload.metric)."""
        self._route_cache = {}
        if bundle is None:
            self._by_source = None
            self._quantile_metrics = set()
            return
        by_source: dict[str, list] = {}
        quantiles = set()
        for query in bundle.queries:
            by_source.setdefault(query.source_metric, []).append(query)
            if query.function == "quantile_over_time":
                quantiles.add(query.metric)
        self._by_source = by_source
        self._quantile_metrics = quantiles

    def _metric(self, name: str) -> MetricAgg:
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = MetricAgg(name, name in self._quantile_metrics)
            metric.load_knobs(self.config, self.part_id)
            self.win_epoch += 1
        elif not metric.keep_values and name in self._quantile_metrics:
            metric.keep_values = True
        return metric

    def _route(self, name: str, labels: dict) -> list:
        """[(MetricAgg, lane)] an event with this metric name and labels feeds (cached)."""
        if self._by_source is None:
            route = self._route_cache.get(name)
            if route is None:
                route = self._route_cache[name] = [(self._metric(name), "")]
            return route
        key = (name, tuple(labels.items()))
        route = self._route_cache.get(key)
        if route is None:
            route = [(self._metric(q.metric), q.lane_of(labels))
                     for q in self._by_source.get(name, ()) if q.matches(name, labels)]
            if len(self._route_cache) >= _ROUTE_CACHE_LIMIT:
                self._route_cache.clear()
            self._route_cache[key] = route
        return route

    # -- the hot path ----------------------------------------------------------------------
    def apply(self, ts: int, name: str | None, labels: dict, value: float | None, now_ns: int) -> None:
        """Apply one event: count it in __events__, then feed every metric it routes to."""
        if ts > self.max_ts:
            self.max_ts = ts
        if now_ns > self.clock_floor:
            self.clock_floor = now_ns
        events = self.events
        start = ts - ts % events.pane_ns
        panes = events.raw.get("")
        if panes is None:
            panes = events.raw[""] = {}
        state = panes.get(start)
        if state is None:
            panes[start] = [1, 0, None, None, None, self.owner]
        elif state[5] != self.owner:
            state = panes[start] = own_state(state, self.owner)
            state[0] += 1
        else:
            state[0] += 1
        if name is None or value is None:
            return
        route = self._route(name, labels)
        if not route:
            return
        self.routed_total += 1
        max_ts = self.max_ts
        owner = self.owner
        units = None
        for metric, lane in route:
            candidate = max_ts - metric.lateness_ns
            guard = now_ns - metric.guard_ns
            if guard < candidate:
                candidate = guard
            wm = metric.wm
            if candidate > wm:
                metric.wm = wm = candidate
            pane_ns = metric.pane_ns
            start = ts - ts % pane_ns
            if start + pane_ns <= wm - metric.horizon_ns:
                key = (metric.name, FINALIZED)
                self.late[key] = self.late.get(key, 0) + 1
                continue
            if units is None:
                units = exact_units(value)
            win_cache = metric.win_cache
            if win_cache:
                cached = win_cache.get(lane)
                if cached is not None and start < cached[0]:
                    del win_cache[lane]
                    self.win_epoch += 1
            panes = metric.raw.get(lane)
            if panes is None:
                panes = metric.raw[lane] = {}
            state = panes.get(start)
            if state is None:
                panes[start] = [1, units, value, value, [value] if metric.keep_values else None, owner]
                continue
            if state[5] != owner:
                state = panes[start] = own_state(state, owner)
            state[0] += 1
            state[1] += units
            if value < state[2]:
                state[2] = value
            elif value > state[3]:
                state[3] = value
            if state[4] is not None:
                insort(state[4], value)

    # -- watermarks, horizons ----------------------------------------------------------------
    def set_knobs(self, config) -> None:
        """Switch to another config version's knobs (at a log position) and let every watermark
        catch up with them: a lower L or G moves it forward at once, a higher one never back."""
        self.config = config
        self._generation = -1
        self.refresh_knobs()
        self.win_epoch += 1
        if self.max_ts == _NO_WATERMARK:
            return
        for metric in self.metrics.values():
            metric.advance(self.max_ts, self.clock_floor)

    def watermarks(self) -> dict[str, int]:
        """{metric: WM_e in ns} for metrics that have one."""
        return {n: m.wm for n, m in self.metrics.items() if m.wm != _NO_WATERMARK}

    def horizons(self) -> dict[str, int]:
        """{metric: finalized horizon (WM_e - C) in ns}."""
        return {n: m.wm - m.horizon_ns for n, m in self.metrics.items() if m.wm != _NO_WATERMARK}

    # -- tiers ---------------------------------------------------------------------------------
    def compact(self, now_ns: int) -> int:
        """Fold raw panes older than raw_retention_ms into the compacted tier, then expire what
        ends before compacted_retention_ms (counted in ``expired_panes``); returns panes folded."""
        self.refresh_knobs()
        raw_retention_ns = _knob_ns(self.config, self.part_id, None, "raw_retention_ms")
        cutoff = now_ns - raw_retention_ns
        bucket_ns = COMPACTED_PANE_MS * _MS
        folded = 0
        metrics = [self.events, *self.metrics.values()]
        for metric in metrics:
            for lane, panes in metric.raw.items():
                old = [start for start in panes if start + metric.pane_ns <= cutoff]
                if not old:
                    continue
                metric.win_cache.clear()
                self.win_epoch += 1
                target = metric.compacted.setdefault(lane, {})
                for start in old:
                    state = panes.pop(start)
                    bucket = start - start % bucket_ns
                    existing = target.get(bucket)
                    if existing is None:
                        target[bucket] = state
                    else:
                        if existing[5] != self.owner:
                            existing = target[bucket] = own_state(existing, self.owner)
                        merge_state(existing, state)
                    folded += 1
        self._expire(metrics, now_ns - _knob_ns(self.config, self.part_id, None, "compacted_retention_ms"), bucket_ns)
        return folded

    def _expire(self, metrics: list, cutoff: int, bucket_ns: int) -> None:
        """Drop raw panes and compacted buckets that end at or before ``cutoff`` (R_compact)."""
        for metric in metrics:
            for tier, width in ((metric.raw, metric.pane_ns), (metric.compacted, bucket_ns)):
                for lane in list(tier):
                    panes = tier[lane]
                    old = [start for start in panes if start + width <= cutoff]
                    if not old:
                        continue
                    metric.win_cache.clear()
                    self.win_epoch += 1
                    for start in old:
                        del panes[start]
                    self.expired_panes += len(old)

    def totals(self) -> dict[str, dict]:
        """{metric: {"count", "sum"}} over both tiers (what compaction must preserve)."""
        out = {}
        for metric in [self.events, *self.metrics.values()]:
            total = [0, 0, None, None, None]
            for tier in (metric.raw, metric.compacted):
                for panes in tier.values():
                    for state in panes.values():
                        total[0] += state[0]
                        total[1] += state[1]
            out[metric.name] = {"count": total[0], "sum": units_to_float(total[1])}
        return out

    # -- copies, export ----------------------------------------------------------------------
    def copy(self) -> "AggregateStore":
        """An independent copy of the state (checkpoints); routing and config are shared.

        Pane states are shared copy-on-write: both stores take new owner tokens.
        """
        self.owner = next(_owner_tokens)
        other = AggregateStore.__new__(AggregateStore)
        other.owner = next(_owner_tokens)
        other.config = self.config
        other.part_id = self.part_id
        other.metrics = {n: m.copy() for n, m in self.metrics.items()}
        other.events = self.events.copy()
        other.late = dict(self.late)
        other.max_ts = self.max_ts
        other.clock_floor = self.clock_floor
        other.routed_total = self.routed_total
        other.expired_panes = self.expired_panes
        other.win_epoch = 0
        other.rule_memo = {}
        other._by_source = self._by_source
        other._quantile_metrics = self._quantile_metrics
        other._route_cache = {}
        other._generation = -1
        other.refresh_knobs()
        return other

    def upgraded_copy(self, bundle) -> "AggregateStore":
        """The state a bundle's shadow starts from (§15, §18.8): a copy routed by ``bundle`` that
        keeps ``__events__`` and the metrics ``bundle`` also defines with an upgrade(from, to)
        path (``upgrade: true``, the default; the lab's upgrade keeps the panes as they are).
        New metrics and ``upgrade: false`` ones start empty: only a WAL replay can fill them."""
        other = self.copy()
        keep = {q.metric for q in bundle.queries if getattr(q, "upgrade", True)} if bundle is not None else set()
        other.metrics = {name: metric for name, metric in other.metrics.items() if name in keep}
        other.late = {key: count for key, count in other.late.items() if key[0] in keep}
        other.set_bundle(bundle)
        return other

    def export(self) -> dict:
        """{metric: {"raw": {lane: {pane_start_ns: state}}, "compacted": {...}}}; empty metrics omitted."""
        out = {}
        for metric in [self.events, *self.metrics.values()]:
            raw = _export_tier(metric.raw)
            compacted = _export_tier(metric.compacted)
            if raw or compacted:
                out[metric.name] = {"raw": raw, "compacted": compacted}
        return out

    def export_late(self) -> dict:
        """{metric: {reason: count}}."""
        out: dict = {}
        for (metric, reason), count in self.late.items():
            out.setdefault(metric, {})[reason] = count
        return out


def canonical_json(data) -> str:
    """Canonical JSON text (sorted keys, no spaces) used for digests."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def digest_of(metrics: dict) -> str:
    """``sha256:<hex>`` over the canonical JSON of an exported metrics dict."""
    return "sha256:" + hashlib.sha256(canonical_json(metrics).encode("ascii")).hexdigest()
