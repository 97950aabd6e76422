"""The lab's partition engine: WAL, dedup, replay sessions, ingress gate, apply queue,
log marks (config changes, shadow starts, activation barriers), checkpoints, WAL replay,
readiness (contract section 5). What applied entries build lives in ``applier.Applier``.

Pure and synchronous: time comes from the injected ``now_ns`` clock, nothing does I/O;
append messages are validated by ``messages.parse_event``. The server calls ``append``
inline and ``apply_pending`` from its apply task. The WAL lives in memory as a list of
tuples; the server persists it through ``wal_entries`` plus the control records handed to
``log_control`` and rebuilds a partition after a restart with ``restore``. Entries at or
below the oldest retained full checkpoint are dropped from memory (``wal_first_index`` moves up).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from itertools import islice
from operator import itemgetter
from typing import Callable

from .applier import Applier, Mark
from .config_knobs import KnobView
from .messages import MalformedEvent, event_size, parse_event
from .partition_restore import LogRestore
from .partition_views import PartitionViews

HEALTHY = "Healthy"
TRANSIENT = "TransientBackpressure"
PERMANENT = "PermanentDurability"
CREDIT_WINDOW_CAP = 1024
DERIVED_EVENTS_KEPT = 100_000   # derived events kept per partition for the test RPC (oldest dropped)
WAL_TRUNCATE_STEP = 4096   # WAL entries freed per call (see Partition._truncate_wal)
_MS = 1_000_000
_READY_SHADOW_STATES = ("Ready", "SHADOW_READY")


class Partition(PartitionViews, LogRestore):
    """One partition of the emulated cluster. See module docstring and docs/developers/interfaces.md."""

    def __init__(self, part_id: str, config: KnobView, now_ns: Callable[[], int],
                 apply_capacity: float | None = None, replication_capacity: float | None = None):
        self.part_id = str(part_id)
        self.config = config
        self.now_ns = now_ns
        self.apply_capacity = apply_capacity          # events/s; the server's apply task uses it
        self.replication_capacity = replication_capacity   # events/s the lagging follower takes (None: keeps up)
        self.leader = "ceptra-0"                      # set by the server
        self.routing_epoch = 1                        # set by the server
        self.unavailable_windows: list[dict] = []     # owned by the server (outages)
        self.replication_lag_ms = 0                   # fault hook: added to the modelled follower lag
        self.fence_until_ns = 0                       # durability fence (outage) end, ns
        self.active_bundle = None                     # committed (the applier switches at the barrier)
        self.shadow_bundle = None
        self.shadow_state: str | None = None
        self.excluded_from: str | None = None           # barrier that committed without this partition
        self.auto_checkpoint = True                   # full checkpoint every checkpoint_full_interval_ms
        self.log_control: Callable[[dict], None] | None = None   # persistence of marks and checkpoints
        self.on_derived: Callable[[dict], None] | None = None    # the cluster's test sink
        self._config_generation = -1
        self._reset(term=1, warmup=False)

    # -- state lifecycle -------------------------------------------------------------------
    def _reset(self, term: int, warmup: bool, baseline: dict | None = None) -> None:
        now = self.now_ns()
        self.term = term
        self._wal: list[tuple] = []   # (index, term, commit_ns, msg, size, ts, key, metric, labels, value)
        index = baseline["index"] if baseline else 0
        self._wal_first_index = index + 1
        self._truncated_max_ts = -1
        self.commit_index = self.applied_index = self.replicated_index = index
        self._applied_pos = 0
        self._queued_bytes = 0
        self.last_commit_ns = now
        self._dedup: OrderedDict = OrderedDict()    # event_id -> (index, term, commit_ns)
        self.replay_sessions: dict[str, int] = {}   # session -> last_seq
        self._marks: list[Mark] = []
        self._mark_seq = 0
        if baseline:
            self.applier = baseline["applier"].copy()
            self._marks = list(baseline["marks"])
            self._mark_seq = max([m.seq for m in self._marks] + [0])
            self.replay_sessions = dict(baseline["replay_sessions"])
            self._dedup = OrderedDict(baseline["dedup"])
            self._checkpoints = [baseline]
        else:
            self.applier = Applier(self.part_id, self._frozen_config(), self.active_bundle)
            self._checkpoints: list[dict] = []
        self.applier.emit = self._emit
        self._last_checkpoint_ns = now
        self._replay_job: dict | None = None
        self._warmup = warmup
        self._horizon_index = index
        self._min_horizon: int | None = None
        self._horizon_advanced_ns = now
        self._last_apply_ns = self._last_routed_apply_ns = 0
        self._routed_seen = 0
        self._repl_tokens = 0.0
        self._repl_last_ns = now
        # counters start over with the state (a wiped partition is a new replica)
        self.appended_total = self.applied_total = self.skipped_total = self.duplicates_total = 0
        self.dedup_capacity_exhausted_total = self.compaction_runs_total = self.wal_replays_total = 0
        self.retry_expired_total = 0
        self.retry_expired: list[dict] = []          # {event_id, part_id, received_ts_ns}: the cluster audits them
        self.last_compaction_duration_ms = 0.0
        self._rejected_late: dict[tuple[str, str], int] = {}
        self.activations: list[dict] = []           # DEFINE_ACTIVATE barriers recorded here
        self.derived: OrderedDict = OrderedDict()   # derived_event_id -> derived event (what rules emitted)
        self.derived_dropped = 0
        self._refresh_config(force=True)

    def wipe(self, keep_checkpoint: bool = True) -> dict:
        """The full-recovery start: the WAL tail is lost, the latest full checkpoint stays as the
        baseline (``keep_checkpoint=False`` drops it too); the partition is a new replica (term + 1)
        in warmup with ``applied_index == commit_index == checkpoint index``. Returns the baseline
        description (index, event_ts_high_ns)."""
        latest = self._checkpoints[-1] if (keep_checkpoint and self._checkpoints) else None
        baseline = None
        if latest is not None:
            baseline = dict(latest, marks=[m for m in self._marks if m.after_index <= latest["index"]],
                            dedup=[(k, v) for k, v in self._dedup.items() if v[0] <= latest["index"]])
        self._reset(term=self.term + 1, warmup=True, baseline=baseline)
        # the new replica goes on from the baseline with today's config and definitions
        self._add_mark("config", self._frozen_config(), version=self.config.version)
        if self.applier.bundle is not self.active_bundle:
            self._add_mark("activate", self.active_bundle, bundle_id=getattr(self.active_bundle, "bundle_id", None))
        if self.shadow_bundle is not None and self.applier.shadow_bundle is not self.shadow_bundle:
            self._add_mark("shadow", self.shadow_bundle, bundle_id=getattr(self.shadow_bundle, "bundle_id", None))
        return self.checkpoint_info()

    def _frozen_config(self) -> KnobView:
        """The current config as an unchanging view (what a mark and an applier hold)."""
        return KnobView(self.config.config, self.config.version)

    def _refresh_config(self, force: bool = False) -> None:
        """Cache the knobs the hot path reads; runs once per config generation. A change is a
        config mark at the current commit index: entries after it apply with the new knobs."""
        config = self.config
        if not force and self._config_generation == config.generation:
            return
        if not force:
            self._add_mark("config", self._frozen_config(), version=config.version)
        self._config_generation = config.generation
        part = self.part_id
        flow = config.section("partition_flow")
        ready = config.section("readiness")
        self._max_events = max(1, int(flow["max_events"]))
        self._max_bytes = max(1, int(flow["max_bytes"]))
        self._max_event_bytes = int(flow["max_event_bytes"])
        self._future_skew_ns = int(config.knob(part, None, "max_future_skew_ms")) * _MS
        self._retry_window_ns = int(config.knob(part, None, "client_retry_window_s")) * 1_000_000_000
        self._dedup_capacity = int(config.knob(part, None, "dedup_capacity_per_partition"))
        self._checkpoint_interval_ns = int(config.knob(part, None, "checkpoint_full_interval_ms")) * _MS
        self._retained_fulls = max(1, int(config.knob(part, None, "checkpoint_retained_fulls")))
        self._ready_apply_lag_ms = float(ready["apply_lag_ms"])
        self._ready_replication_lag_ms = float(ready["replication_lag_ms"])
        self._lateness_ns = int(config.knob(part, None, "lateness_allowance_ms")) * _MS
        self._configured_gate = config.ingress_gate(part)
        if self._configured_gate == "open":
            self._warmup = False     # operators open the gate to end warmup

    def config_changed(self) -> None:
        """The cluster's config moved on: record the mark now (it would be found lazily anyway)."""
        self._refresh_config()

    def _add_mark(self, kind: str, value, **logged) -> Mark:
        self._mark_seq += 1
        mark = Mark(self._mark_seq, self.commit_index, kind, value)
        self._marks.append(mark)
        if self.log_control is not None:
            self.log_control({"ctl": kind, "after": mark.after_index, **logged})
        if self.applied_index >= mark.after_index:      # nothing queued before it: in effect now
            self.applier.advance(self._wal, self._wal_first_index, self.applied_index, self._marks)
        return mark

    # -- append ------------------------------------------------------------------------------
    def ingress_gate(self) -> str:
        """``open`` or ``warmup``: the config's per-partition gate, else warmup after a wipe."""
        self._refresh_config()
        if self._configured_gate is not None:
            return self._configured_gate
        return "warmup" if self._warmup else "open"

    def append(self, msg: dict, raw_size: int | None = None) -> dict:
        """Commit one event (or refuse it) and answer with the contract's append response."""
        if self._config_generation != self.config.generation:
            self._refresh_config()
        now = self.now_ns()
        try:
            event_id, ts, key, name, labels, value, replay, session, seq = parse_event(msg, self.part_id)
        except MalformedEvent as exc:
            return self._permanent(msg, "PERMANENT_PAYLOAD", str(exc))
        except Exception as exc:  # never raise on client input
            return self._permanent(msg, "PERMANENT_PAYLOAD", "malformed event: %s" % exc)
        size = raw_size if raw_size is not None else event_size(msg)
        if size > self._max_event_bytes:
            return self._permanent(msg, "PERMANENT_PAYLOAD", "event is %d bytes, above partition_flow."
                                   "max_event_bytes (%d)" % (size, self._max_event_bytes))
        if now < self.fence_until_ns:
            return self._permanent(msg, "PERMANENT_DURABILITY",
                                   "partition %s refuses appends (durability fence)" % self.part_id)
        if ts > now + self._future_skew_ns:
            reason_key = (name or "__events__", "FUTURE_SKEW")
            self._rejected_late[reason_key] = self._rejected_late.get(reason_key, 0) + 1
            return self._permanent(msg, "FUTURE_SKEW", "ts_ns is more than max_future_skew_ms "
                                   "ahead of the partition clock")
        prior = self._dedup.get(event_id)
        if session is not None and seq <= self.replay_sessions.get(session, -1):
            self.duplicates_total += 1
            return self._duplicate(event_id, prior)
        if prior is not None:
            # §7 apply step 2 / §3: every event_id, REPLAY ones included, is looked up in the dedup table
            if session is not None:
                self.replay_sessions[session] = seq
            if now - prior[2] <= self._retry_window_ns:
                self.duplicates_total += 1
                return self._duplicate(event_id, prior)
            self.retry_expired_total += 1
            self.retry_expired.append({"event_id": event_id, "part_id": self.part_id, "received_ts_ns": now})
            return self._permanent(msg, "PERMANENT_RETRY_EXPIRED", "event_id %s was acknowledged more than "
                                   "client_retry_window_s ago (index %d); do not retry it" % (event_id, prior[0]))
        if not replay and (self._configured_gate or ("warmup" if self._warmup else "open")) == "warmup":
            return self._transient(event_id, "TRANSIENT_WARMUP", now)
        depth = self.commit_index - self.applied_index
        if depth >= self._max_events or self._queued_bytes >= self._max_bytes:
            if self.apply_capacity is not None:
                return self._transient(event_id, "TRANSIENT_BACKPRESSURE", now)
            # Unlimited apply capacity: a full queue only means the caller's batch is larger
            # than partition_flow allows between two apply_pending calls; drain it here.
            self.apply_pending()
            depth = 0
        if len(self._dedup) >= self._dedup_capacity:
            self._expire_dedup(now, self.finalized_horizon_index())
            if len(self._dedup) >= self._dedup_capacity:
                self.dedup_capacity_exhausted_total += 1
                return self._transient(event_id, "DEDUP_CAPACITY", now)
        index = self.commit_index + 1
        self.commit_index = index
        self.last_commit_ns = now
        self._wal.append((index, self.term, now, msg, size, ts, key, name, labels, value))
        self._dedup[event_id] = (index, self.term, now)
        if session is not None:
            self.replay_sessions[session] = seq
        self._queued_bytes += size
        self.appended_total += 1
        free = self._max_events - depth - 1
        return {"event_id": event_id, "status": HEALTHY, "credit_hint": "Recover",
                "cep_credit_hint": {"client_window_size": CREDIT_WINDOW_CAP if free > CREDIT_WINDOW_CAP
                                    else (free if free > 1 else 1), "retry_backoff_ms": 0},
                "term": self.term, "index": index}

    def _free_slots(self) -> int:
        return max(1, min(CREDIT_WINDOW_CAP, self._max_events - (self.commit_index - self.applied_index)))

    def _duplicate(self, event_id: str, prior: tuple | None) -> dict:
        response = {"event_id": event_id, "status": HEALTHY, "credit_hint": "Recover",
                    "cep_credit_hint": {"client_window_size": self._free_slots(), "retry_backoff_ms": 0},
                    "duplicate": True}
        if prior is not None:
            response["term"] = prior[1]
            response["index"] = prior[0]
        return response

    def _transient(self, event_id: str, reason: str, now: int) -> dict:
        return {"event_id": event_id, "status": TRANSIENT, "credit_hint": "Hold",
                "cep_credit_hint": {"client_window_size": self._free_slots(),
                                    "retry_backoff_ms": self._backoff_ms(now)},
                "cep_status_reason": reason}

    def _permanent(self, msg, reason: str, error: str) -> dict:
        event_id = msg.get("event_id") if isinstance(msg, dict) else None
        return {"event_id": event_id if isinstance(event_id, str) else None, "status": PERMANENT,
                "credit_hint": "Shed", "cep_credit_hint": {"client_window_size": self._free_slots(),
                                                           "retry_backoff_ms": 0},
                "cep_status_reason": reason, "error": error}

    def _backoff_ms(self, now: int) -> int:
        """How long a refused client should wait: time to drain half the queue, else the lag."""
        depth = self.commit_index - self.applied_index
        if self.apply_capacity:
            estimate = (depth - self._max_events / 2) / self.apply_capacity * 1000.0
        else:
            estimate = self._lag_ms(now)
        return int(max(25.0, min(5000.0, estimate)))

    def _expire_dedup(self, now: int, horizon_index: int) -> None:
        """Evict event_ids (oldest first: the table is in commit order) that are both older than
        client_retry_window_s and at or below the finalized horizon (§3); a retry of one that is
        older but not evictable is refused PERMANENT_RETRY_EXPIRED instead of applied again."""
        dedup = self._dedup
        horizon = now - self._retry_window_ns
        while dedup:
            prior = dedup[next(iter(dedup))]
            if prior[2] >= horizon or prior[0] > horizon_index:
                break
            dedup.popitem(last=False)

    # -- apply --------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        """Committed entries not applied yet."""
        return self.commit_index - self.applied_index

    def _lag_ms(self, now: int) -> float:
        if self._applied_pos >= len(self._wal):
            return 0.0
        return max(0.0, (now - self._wal[self._applied_pos][2]) / _MS)

    def apply_lag_ms(self) -> float:
        """Age of the oldest committed-unapplied entry (0 when the queue is empty)."""
        return self._lag_ms(self.now_ns())

    @property
    def store(self):
        """The active bundle's aggregate state as applied so far."""
        return self.applier.store

    def apply_pending(self, max_events: int | None = None) -> int:
        """Apply committed entries in index order (at most ``max_events``); returns how many."""
        if self._config_generation != self.config.generation:
            self._refresh_config()
        now = self.now_ns()
        start = self._applied_pos
        end = len(self._wal)
        if max_events is not None:
            end = min(end, start + max(0, int(max_events)))
        target = self._wal[end - 1][0] if end > start else self.applied_index
        routed_before = self.applier.store.routed_total
        applied, skipped, done_bytes = self.applier.advance(self._wal, self._wal_first_index, target, self._marks)
        if end > start:
            self._applied_pos = end
            self.applied_index = target
            self._queued_bytes -= done_bytes
            self.applied_total += applied
            self.skipped_total += skipped
            self._last_apply_ns = now
            if self.applier.store.routed_total != routed_before:
                self._last_routed_apply_ns = now
        self.tick(now)
        return end - start

    def _emit(self, derived: dict) -> None:
        """A derived event a rule emitted while applying (live, a restart or a WAL replay job)."""
        derived_id = derived["derived_event_id"]
        if derived_id not in self.derived:
            self.derived[derived_id] = derived
            if len(self.derived) > DERIVED_EVENTS_KEPT:
                self.derived.popitem(last=False)
                self.derived_dropped += 1
        if self.on_derived is not None:
            self.on_derived(derived)

    def tick(self, now: int | None = None) -> None:
        """Housekeeping: horizon-stall tracking, replication, dedup expiry, periodic checkpoints."""
        if now is None:
            now = self.now_ns()
        horizons = self.store.horizons()
        if horizons:
            lowest = min(horizons.values())
            # Any change counts as movement: raising C for a backfill moves the horizon back,
            # and that must not read as a stall for the whole (long) backfill.
            if lowest != self._min_horizon:
                self._min_horizon = lowest
                self._horizon_advanced_ns = now
        self.replicate(now)
        self._expire_dedup(now, self.finalized_horizon_index())
        if self.auto_checkpoint and now - self._last_checkpoint_ns >= self._checkpoint_interval_ns:
            self.checkpoint()
        elif self._checkpoints:
            self._truncate_wal()   # the rest of a truncation a checkpoint started

    def finalized_horizon_stall(self) -> bool:
        """§3 horizon stall: the finalized horizon stayed flat for more than 2 x L (the
        partition's lateness allowance) while events that feed a metric kept being applied; it
        clears when the horizon moves or when such events stop for 2 x L. Events no metric
        reads (no bundle, unrouted payloads) neither raise nor hold it."""
        window = 2 * self._lateness_ns
        last = self._last_routed_apply_ns
        return last - self._horizon_advanced_ns > window and self.now_ns() - last <= window

    def finalized_horizon_index(self) -> int:
        """Highest applied index whose entries (and all before) have event time before every
        metric's horizon; with no metric horizon at all nothing can change, so the applied index."""
        horizons = self.store.horizons()
        if not horizons:
            return self.applied_index if not self.store.metrics else self._horizon_index
        lowest = min(horizons.values())
        index = self._horizon_index
        if index < self._wal_first_index - 1:
            if self._truncated_max_ts >= lowest:
                return index
            index = self._wal_first_index - 1
        wal, first = self._wal, self._wal_first_index
        while index < self.applied_index and wal[index + 1 - first][5] < lowest:
            index += 1
        self._horizon_index = index
        return index

    # -- replication (the lagging follower) ----------------------------------------------------
    def replicate(self, now: int) -> None:
        """Move the modelled follower along at ``replication_capacity`` events/s (token bucket,
        at most 50 ms of budget banked); without a capacity it keeps up with every commit."""
        if self.replication_capacity is None:
            self.replicated_index = self.commit_index
            self._repl_last_ns = now
            return
        elapsed_s = max(0, now - self._repl_last_ns) / 1e9
        self._repl_last_ns = now
        capacity = self.replication_capacity
        self._repl_tokens = min(self._repl_tokens + capacity * elapsed_s, max(1.0, capacity * 0.05))
        whole = min(int(self._repl_tokens), self.commit_index - self.replicated_index)
        if whole > 0:
            self.replicated_index += whole
            self._repl_tokens -= whole
        elif self.replicated_index >= self.commit_index:
            self._repl_tokens = min(self._repl_tokens, 1.0)

    def follower_lag_ms(self, now: int | None = None) -> float:
        """Age of the oldest committed entry the follower does not have yet, plus the fault's lag."""
        if self.replication_capacity is None:        # the follower keeps up with every commit
            return float(self.replication_lag_ms)
        now = self.now_ns() if now is None else now
        lag = 0.0
        position = self.replicated_index + 1 - self._wal_first_index
        if self.replicated_index < self.commit_index and 0 <= position < len(self._wal):
            lag = max(0.0, (now - self._wal[position][2]) / _MS)
        return lag + float(self.replication_lag_ms)

    # -- tiers, checkpoints, WAL replay ---------------------------------------------------------
    def compact(self) -> dict:
        """Fold raw panes older than raw_retention_ms into the compacted tier (totals unchanged)
        and expire panes past compacted_retention_ms."""
        started = time.perf_counter()
        expired_before = self.store.expired_panes
        folded = self.store.compact(self.now_ns())
        duration_ms = (time.perf_counter() - started) * 1000.0
        self.compaction_runs_total += 1
        self.last_compaction_duration_ms = duration_ms
        return {"folded_panes": folded, "expired_panes": self.store.expired_panes - expired_before,
                "duration_ms": round(duration_ms, 3)}

    def checkpoint(self) -> None:
        """Take a full checkpoint of the applied state; keep checkpoint_retained_fulls of them.

        It holds the applier (aggregates with watermarks, guard floor and knobs in force, the
        shadow, the per-key map), the replay sessions, and the event-time high-water mark."""
        now = self.now_ns()
        latest = self._checkpoints[-1] if self._checkpoints else None
        if latest is not None and latest["index"] == self.applied_index and self._replay_job is None \
                and latest["applier"].marks_done == self.applier.marks_done:
            applier = latest["applier"]          # unchanged: share the frozen copy
        else:
            applier = self.applier.copy()
        self._checkpoints.append({"index": self.applied_index, "time_ns": now, "applier": applier,
                                  "replay_sessions": dict(self.replay_sessions),
                                  "event_ts_high_ns": max(0, applier.store.max_ts)})
        del self._checkpoints[:-self._retained_fulls]
        self._last_checkpoint_ns = now
        if self.log_control is not None:
            self.log_control({"ctl": "checkpoint", "after": self.applied_index})
        self._truncate_wal()

    def checkpoint_info(self) -> dict:
        """/v1/state ``checkpoint``: where the latest full checkpoint (the baseline) ends."""
        latest = self._checkpoints[-1] if self._checkpoints else None
        return {"full_index": latest["index"] if latest else 0, "age_ms": int(self.checkpoint_age_ms()),
                "event_ts_high_ns": latest["event_ts_high_ns"] if latest else 0}

    def _truncate_wal(self) -> None:
        """Drop in-memory WAL entries at or below the oldest retained checkpoint (and replicated),
        at most WAL_TRUNCATE_STEP per call (``tick`` goes on with the rest): freeing ~50k entries
        at once stalled the whole lab for ~200 ms at every periodic checkpoint (py-spy)."""
        keep_after = self._checkpoints[0]["index"]
        if self.replication_capacity is not None:    # the follower still needs what it has not got
            keep_after = min(keep_after, self.replicated_index)
        if self._replay_job is not None:
            keep_after = min(keep_after, self._replay_job["from_index"])
        count = min(keep_after - self._wal_first_index + 1, self._applied_pos, WAL_TRUNCATE_STEP)
        if count <= 0:
            return
        self._truncated_max_ts = max(self._truncated_max_ts,
                                     max(map(itemgetter(5), islice(self._wal, count))))
        del self._wal[:count]
        self._wal_first_index += count
        self._applied_pos -= count

    def checkpoint_age_ms(self) -> float:
        """Time since the latest full checkpoint (since start/wipe when there is none)."""
        return max(0.0, (self.now_ns() - self._last_checkpoint_ns) / _MS)

    def _from_checkpoint(self, checkpoint: dict | None, shadow_bundle=None) -> Applier:
        """A copy of a checkpoint's applier (a fresh one at the start of the WAL when None) that
        also rebuilds the shadow of the bundle being warmed (default: the current shadow) from
        there (§15, §18.8)."""
        shadow_bundle = shadow_bundle if shadow_bundle is not None else self.shadow_bundle
        if checkpoint is not None:
            applier = checkpoint["applier"].copy()
        else:
            applier = Applier(self.part_id, self._marks_config_at_start(), None)
            applier.index = self._wal_first_index - 1
        if shadow_bundle is not None:
            applier.shadow_bundle = applier.pinned_shadow = shadow_bundle
            applier.shadow = applier.store.upgraded_copy(shadow_bundle)
        applier.emit = self._emit
        return applier

    def _marks_config_at_start(self) -> KnobView:
        config = next((m.value for m in self._marks if m.kind == "config" and m.after_index == 0), None)
        return config or self.applier.knobs

    def replay_from_checkpoint(self, max_entries: int) -> dict:
        """One step of a WAL replay job: rebuild state from the latest full checkpoint.

        The first call starts the job from a copy of the checkpoint (the start of the WAL when
        there is none), with the shadow bundle's state rebuilt from it; each call re-applies
        up to ``max_entries`` entries, config changes and barriers at their log positions.
        When the rebuilt state has caught up with ``applied_index`` it replaces the live state:
        the active definitions' state comes out as it was, the shadow's now holds the replayed
        entries (what an ``upgrade: false`` metric needs)."""
        job = self._replay_job
        if job is None:
            latest = self._checkpoints[-1] if self._checkpoints else None
            applier = self._from_checkpoint(latest)
            job = self._replay_job = {"from_index": applier.index, "to_index": self.applied_index, "applier": applier,
                                      "shadow": self.shadow_bundle}
        applier = job["applier"]
        target = min(self.applied_index, applier.index + max(1, int(max_entries)))
        applier.advance(self._wal, self._wal_first_index, target, self._marks)
        done = applier.index >= self.applied_index
        result = {"from_index": job["from_index"], "to_index": max(job["to_index"], applier.index),
                  "replayed_index": applier.index, "done": done}
        if done:
            applier.advance(self._wal, self._wal_first_index, self.applied_index, self._marks)
            applier.pinned_shadow = None
            self.applier = applier
            self._replay_job = None
            self.wal_replays_total += 1
            if self.log_control is not None:
                self.log_control({"ctl": "rebuild", "after": self.applied_index, "from": job["from_index"],
                                  "bundle_id": getattr(job["shadow"], "bundle_id", None)})
        return result

    # -- definitions, faults the server sets ------------------------------------------------------
    def set_bundles(self, active, shadow) -> None:
        """Commit the active bundle (an activation at the commit index when it changes) and the
        shadow being warmed (a shadow start, from the state applied by then)."""
        if active is not self.active_bundle:
            self.define_activate(active)
        if shadow is not self.shadow_bundle:
            self.start_shadow(shadow)

    def start_shadow(self, bundle) -> None:
        """Start warming ``bundle`` in shadow (None: stop): entries after the commit index apply
        to its state too, which starts as an upgrade of the active state (§15 Warm)."""
        self.shadow_bundle = bundle
        if bundle is None:
            self.shadow_state = None
        self._add_mark("shadow", bundle, bundle_id=getattr(bundle, "bundle_id", None))

    def define_activate(self, compiled) -> int:
        """Record the DEFINE_ACTIVATE barrier of ``compiled`` here; returns its index.

        The barrier is not a WAL entry of its own (an entry would count as an appended and
        applied event): the barrier index is the index of the last entry committed before the
        switch (0 on an empty WAL); entries up to it apply with the old definitions, entries
        after it with ``compiled`` (whose shadow state becomes the active state then).
        commit_index, applied_index and the event counters do not change."""
        barrier = self.commit_index
        self._add_mark("activate", compiled, bundle_id=getattr(compiled, "bundle_id", None))
        self.active_bundle = compiled
        if self.shadow_bundle is compiled:
            self.shadow_bundle = None
            self.shadow_state = None
        self.activations.append({"index": barrier, "term": self.term, "time_ns": self.now_ns(),
                                 "bundle_id": getattr(compiled, "bundle_id", None),
                                 "def_version": getattr(compiled, "def_version", 0)})
        return barrier

    def set_shadow_state(self, state: str | None) -> None:
        """Shadow apply state of the newest bundle here (Pending|Replaying|Ready|Expired|SHADOW_*)."""
        self.shadow_state = state

    def set_replication_lag_ms(self, lag_ms: float) -> None:
        """Extra follower lag (fault hook), added to the modelled lag."""
        self.replication_lag_ms = lag_ms

    def set_outage(self, start_ns: int, end_ns: int) -> None:
        """Refuse appends until ``end_ns`` and record the span in unavailable_windows."""
        self.fence_until_ns = max(self.fence_until_ns, end_ns)
        self.unavailable_windows.append({"start_ts_ns": start_ns, "end_ts_ns": end_ns})

    def definition_warmup_pending(self) -> bool:
        return self.shadow_bundle is not None and self.shadow_state not in _READY_SHADOW_STATES
