"""The lab's partition engine: WAL, dedup, replay sessions, ingress gate, apply queue,
watermarks and aggregates, compaction, checkpoints, readiness (contract section 5).

Pure and synchronous: time comes from the injected ``now_ns`` clock, nothing does I/O;
append messages are validated by ``messages.parse_event``. The server calls ``append``
inline and ``apply_pending`` from its apply task. The WAL lives in memory as a list of tuples; the server persists it through ``wal_entries`` and rebuilds a
partition after a restart with ``restore``. Entries at or below the oldest retained full
checkpoint are dropped from memory (``wal_first_index`` moves up).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from itertools import islice
from operator import itemgetter
from typing import Callable

from .aggregates import AggregateStore, digest_of
from .config_knobs import KnobView
from .messages import MalformedEvent, event_size, parse_event

HEALTHY = "Healthy"
TRANSIENT = "TransientBackpressure"
PERMANENT = "PermanentDurability"
CREDIT_WINDOW_CAP = 1024
STALL_AFTER_NS = 60 * 1_000_000_000
WAL_TRUNCATE_STEP = 4096   # WAL entries freed per call (see Partition._truncate_wal)
_MS = 1_000_000
_READY_SHADOW_STATES = ("Ready", "SHADOW_READY")


class Partition:
    """One partition of the emulated cluster. See module docstring and docs/developers/interfaces.md."""

    def __init__(self, part_id: str, config: KnobView, now_ns: Callable[[], int],
                 apply_capacity: float | None = None):
        self.part_id = str(part_id)
        self.config = config
        self.now_ns = now_ns
        self.apply_capacity = apply_capacity          # events/s; the server's apply task uses it
        self.leader = "ceptra-0"                      # set by the server
        self.routing_epoch = 1                        # set by the server
        self.unavailable_windows: list[dict] = []     # owned by the server (outages)
        self.replication_lag_ms = 0
        self.fence_until_ns = 0                       # durability fence (outage) end, ns
        self.active_bundle = None
        self.shadow_bundle = None
        self.shadow_state: str | None = None
        self.auto_checkpoint = True                   # full checkpoint every checkpoint_full_interval_ms
        self._config_generation = -1
        self._reset(term=1, warmup=False)

    # -- state lifecycle -------------------------------------------------------------------
    def _reset(self, term: int, warmup: bool) -> None:
        now = self.now_ns()
        self.term = term
        self._wal: list[tuple] = []   # (index, term, commit_ns, msg, size, ts, key, metric, labels, value)
        self._wal_first_index = 1
        self._truncated_max_ts = -1
        self.commit_index = 0
        self.applied_index = 0
        self._applied_pos = 0
        self._queued_bytes = 0
        self._dedup: OrderedDict = OrderedDict()    # event_id -> (index, term, commit_ns)
        self.replay_sessions: dict[str, int] = {}   # session -> last_seq
        self._key_last: dict[str, int] = {}
        self.store = AggregateStore(self.config, self.part_id)
        self.store.set_bundle(self.active_bundle)
        self._checkpoints: list[dict] = []
        self._last_checkpoint_ns = now
        self._replay_job: dict | None = None
        self._warmup = warmup
        self._horizon_index = 0
        self._min_horizon: int | None = None
        self._horizon_advanced_ns = now
        self._last_apply_ns = 0
        # counters start over with the state (a wiped partition is a new replica)
        self.appended_total = self.applied_total = self.skipped_total = self.duplicates_total = 0
        self.dedup_capacity_exhausted_total = self.compaction_runs_total = self.wal_replays_total = 0
        self.last_compaction_duration_ms = 0.0
        self._rejected_late: dict[tuple[str, str], int] = {}
        self.activations: list[dict] = []           # DEFINE_ACTIVATE barriers recorded here
        self._refresh_config(force=True)

    def wipe(self) -> None:
        """Empty WAL and state (full-recovery drill); the partition enters warmup."""
        self._reset(term=self.term + 1, warmup=True)

    def _refresh_config(self, force: bool = False) -> None:
        """Cache the knobs the hot path reads; runs once per config generation."""
        config = self.config
        if not force and self._config_generation == config.generation:
            return
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
        self._configured_gate = config.ingress_gate(part)
        if self._configured_gate == "open":
            self._warmup = False     # operators open the gate to end warmup
        self.store.refresh_knobs()

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
        if session is not None:
            if seq <= self.replay_sessions.get(session, -1):
                self.duplicates_total += 1
                return self._duplicate(event_id, self._dedup.get(event_id))
        else:
            prior = self._dedup.get(event_id)
            if prior is not None:
                if now - prior[2] <= self._retry_window_ns:
                    self.duplicates_total += 1
                    return self._duplicate(event_id, prior)
                del self._dedup[event_id]           # outside the retry window: a new event
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
        if session is None and len(self._dedup) >= self._dedup_capacity:
            self._expire_dedup(now)
            if len(self._dedup) >= self._dedup_capacity:
                self.dedup_capacity_exhausted_total += 1
                return self._transient(event_id, "DEDUP_CAPACITY", now)
        index = self.commit_index + 1
        self.commit_index = index
        self._wal.append((index, self.term, now, msg, size, ts, key, name, labels, value))
        if session is None:
            self._dedup[event_id] = (index, self.term, now)
        else:
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

    def _expire_dedup(self, now: int) -> None:
        """Forget event_ids older than client_retry_window_s (oldest first: dict is in commit order)."""
        dedup = self._dedup
        horizon = now - self._retry_window_ns
        while dedup:
            event_id, prior = next(iter(dedup.items()))
            if prior[2] >= horizon:
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

    def apply_pending(self, max_events: int | None = None) -> int:
        """Apply committed entries in index order (at most ``max_events``); returns how many."""
        if self._config_generation != self.config.generation:
            self._refresh_config()
        now = self.now_ns()
        start = self._applied_pos
        end = len(self._wal)
        if max_events is not None:
            end = min(end, start + max(0, int(max_events)))
        if end > start:
            applied, skipped, done_bytes = _apply_entries(self._wal, start, end, self.store,
                                                          self._key_last, now)
            self._applied_pos = end
            self.applied_index = self._wal[end - 1][0]
            self._queued_bytes -= done_bytes
            self.applied_total += applied
            self.skipped_total += skipped
            self._last_apply_ns = now
        self.tick(now)
        return end - start

    def tick(self, now: int | None = None) -> None:
        """Housekeeping: watermarks, horizon-stall tracking, dedup expiry, periodic checkpoints."""
        if now is None:
            now = self.now_ns()
        self.store.tick(now)
        horizons = self.store.horizons()
        if horizons:
            lowest = min(horizons.values())
            # Any change counts as movement: raising C for a backfill moves the horizon back,
            # and that must not read as a stall for the whole (long) backfill.
            if lowest != self._min_horizon:
                self._min_horizon = lowest
                self._horizon_advanced_ns = now
        self._expire_dedup(now)
        if self.auto_checkpoint and now - self._last_checkpoint_ns >= self._checkpoint_interval_ns:
            self.checkpoint()
        elif self._checkpoints:
            self._truncate_wal()   # the rest of a truncation a checkpoint started

    def finalized_horizon_stall(self) -> bool:
        """True while events keep being applied (last apply < 60 s ago) but the finalized
        horizon has not moved for > 60 s; clears when it moves or applies stop."""
        return (self._last_apply_ns - self._horizon_advanced_ns > STALL_AFTER_NS
                and self.now_ns() - self._last_apply_ns <= STALL_AFTER_NS)

    def finalized_horizon_index(self) -> int:
        """Highest applied index whose entries (and all before) have event time before every metric's horizon."""
        horizons = self.store.horizons()
        if not horizons:
            return self._horizon_index
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

    # -- tiers, checkpoints, WAL replay ---------------------------------------------------------
    def compact(self) -> dict:
        """Fold raw panes older than raw_retention_ms into the compacted tier (totals unchanged)."""
        started = time.perf_counter()
        folded = self.store.compact(self.now_ns())
        duration_ms = (time.perf_counter() - started) * 1000.0
        self.compaction_runs_total += 1
        self.last_compaction_duration_ms = duration_ms
        return {"folded_panes": folded, "duration_ms": round(duration_ms, 3)}

    def checkpoint(self) -> None:
        """Take a full checkpoint of the applied state; keep checkpoint_retained_fulls of them."""
        now = self.now_ns()
        latest = self._checkpoints[-1] if self._checkpoints else None
        if latest is not None and latest["index"] == self.applied_index and self._replay_job is None:
            store, key_last = latest["store"], latest["key_last"]   # unchanged: share the frozen copy
        else:
            store, key_last = self.store.copy(), dict(self._key_last)
        self._checkpoints.append({"index": self.applied_index, "time_ns": now, "store": store,
                                  "key_last": key_last})
        del self._checkpoints[:-self._retained_fulls]
        self._last_checkpoint_ns = now
        self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Drop in-memory WAL entries at or below the oldest retained checkpoint, at most
        WAL_TRUNCATE_STEP per call (``tick`` goes on with the rest): freeing ~50k entries at
        once stalled the whole lab for ~200 ms at every periodic checkpoint (py-spy)."""
        keep_after = self._checkpoints[0]["index"]
        if self._replay_job is not None:
            keep_after = min(keep_after, self._replay_job["replayed_index"])
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

    def replay_from_checkpoint(self, max_entries: int) -> dict:
        """One step of a WAL replay job: rebuild state from the latest full checkpoint.

        The first call starts the job (fresh state from the checkpoint copy, or empty state
        when there is none); each call re-applies up to ``max_entries`` WAL entries. When the
        rebuilt state has caught up with ``applied_index`` it replaces the live state.
        """
        job = self._replay_job
        if job is None:
            latest = self._checkpoints[-1] if self._checkpoints else None
            if latest is not None:
                store, key_last, from_index = latest["store"].copy(), dict(latest["key_last"]), latest["index"]
            else:
                store, key_last = AggregateStore(self.config, self.part_id), {}
                from_index = self._wal_first_index - 1
            store.set_bundle(self.active_bundle)     # rebuild with the CURRENT definitions
            job = self._replay_job = {"from_index": from_index, "to_index": self.applied_index,
                                      "replayed_index": from_index, "store": store, "key_last": key_last}
        start = job["replayed_index"] - self._wal_first_index + 1
        end = min(self._applied_pos, start + max(1, int(max_entries)))
        if end > start:
            _apply_entries(self._wal, start, end, job["store"], job["key_last"], self.now_ns())
            job["replayed_index"] = self._wal[end - 1][0]
        done = job["replayed_index"] >= self.applied_index
        result = {"from_index": job["from_index"], "to_index": max(job["to_index"], job["replayed_index"]),
                  "replayed_index": job["replayed_index"], "done": done}
        if done:
            self.store, self._key_last = job["store"], job["key_last"]
            self._replay_job = None
            self.wal_replays_total += 1
        return result

    # -- definitions, faults the server sets ------------------------------------------------------
    def set_bundles(self, active, shadow) -> None:
        """Active bundle routes events to metrics; a shadow bundle only affects readiness."""
        if active is not self.active_bundle:
            self.store.set_bundle(active)
        self.active_bundle = active
        self.shadow_bundle = shadow
        if shadow is None:
            self.shadow_state = None

    def define_activate(self, compiled) -> int:
        """Record the DEFINE_ACTIVATE barrier of ``compiled`` (made active here); returns its index.

        The barrier is not a WAL entry of its own (an entry would count as an appended and
        applied event): the barrier index is the index of the last entry committed before
        the switch (0 on an empty WAL), and entries with a higher index apply with the new
        definitions. commit_index, applied_index and the event counters do not change.
        """
        if compiled is not self.active_bundle:
            self.set_bundles(compiled, None if self.shadow_bundle is compiled else self.shadow_bundle)
        barrier = self.commit_index
        self.activations.append({"index": barrier, "term": self.term, "time_ns": self.now_ns(),
                                 "bundle_id": getattr(compiled, "bundle_id", None),
                                 "def_version": getattr(compiled, "def_version", 0)})
        return barrier

    def set_shadow_state(self, state: str | None) -> None:
        """Shadow apply state of the newest bundle here (Pending|Replaying|Ready|Expired|SHADOW_*)."""
        self.shadow_state = state

    def set_replication_lag_ms(self, lag_ms: float) -> None:
        """Emulated follower lag (fault hook)."""
        self.replication_lag_ms = lag_ms

    def set_outage(self, start_ns: int, end_ns: int) -> None:
        """Refuse appends until ``end_ns`` and record the span in unavailable_windows."""
        self.fence_until_ns = max(self.fence_until_ns, end_ns)
        self.unavailable_windows.append({"start_ts_ns": start_ns, "end_ts_ns": end_ns})

    def definition_warmup_pending(self) -> bool:
        return self.shadow_bundle is not None and self.shadow_state not in _READY_SHADOW_STATES

    # -- views ------------------------------------------------------------------------------------
    @property
    def late_total(self) -> dict[tuple[str, str], int]:
        """{(metric, reason): count}: FINALIZED drops from the aggregate state plus FUTURE_SKEW refusals."""
        merged = dict(self.store.late)
        for key, count in self._rejected_late.items():
            merged[key] = merged.get(key, 0) + count
        return merged

    def watermarks_ns(self) -> dict[str, int]:
        """{metric: WM_e in ns}."""
        return self.store.watermarks()

    def stats(self) -> dict:
        """Counters and gauges the server exports on /metrics (one flat, JSON-able dict)."""
        now = self.now_ns()
        return {
            "appended_total": self.appended_total, "applied_total": self.applied_total,
            "skipped_total": self.skipped_total, "duplicates_total": self.duplicates_total,
            "dedup_capacity_exhausted_total": self.dedup_capacity_exhausted_total,
            "dedup_occupancy": len(self._dedup), "dedup_capacity": self._dedup_capacity,
            "compaction_runs_total": self.compaction_runs_total,
            "compaction_duration_ms": self.last_compaction_duration_ms,
            "wal_replays_total": self.wal_replays_total,
            "queue_depth": self.queue_depth(), "apply_lag_ms": self._lag_ms(now),
            "replication_lag_ms": self.replication_lag_ms,
            "checkpoint_age_ms": self.checkpoint_age_ms(),
            "finalized_horizon_stall": self.finalized_horizon_stall(),
            "definition_warmup_pending": self.definition_warmup_pending(),
            "watermark_ts_ms": {m: wm // _MS for m, wm in self.store.watermarks().items()},
            "finalized_horizon_ts_ns": self.store.horizons(),
            "late_total": [{"metric": m, "reason": r, "count": c}
                           for (m, r), c in sorted(self.late_total.items())],
        }

    def readiness(self) -> dict:
        """{"ready", "reasons", "metrics": {"apply_lag_ms", "replication_lag_ms"}}."""
        self._refresh_config()
        now = self.now_ns()
        lag = self._lag_ms(now)
        reasons = []
        if self.ingress_gate() == "warmup":
            reasons.append("warmup")
        if lag > self._ready_apply_lag_ms:
            reasons.append("apply_lag")
        if self.replication_lag_ms > self._ready_replication_lag_ms:
            reasons.append("replication_lag")
        if now - self._last_checkpoint_ns > 2 * self._checkpoint_interval_ns:
            reasons.append("checkpoint_age")
        if self.definition_warmup_pending():
            reasons.append("definition_warmup_pending")
        if now < self.fence_until_ns:
            reasons.append("durability_fence")
        if self.finalized_horizon_stall():
            reasons.append("watermark_stall")
        return {"ready": not reasons, "reasons": reasons,
                "metrics": {"apply_lag_ms": round(lag, 3), "replication_lag_ms": self.replication_lag_ms}}

    def manifest(self) -> dict:
        """This partition's element of GET /v1/state "partitions"."""
        self._refresh_config()
        self._expire_dedup(self.now_ns())
        latest = self._checkpoints[-1] if self._checkpoints else None
        bundle = self.active_bundle
        return {
            "part_id": self.part_id, "leader": self.leader, "routing_epoch": self.routing_epoch,
            "commit_index": self.commit_index, "applied_index": self.applied_index,
            "wal_first_index": self._wal_first_index, "wal_last_index": self.commit_index,
            "checkpoint": {"full_index": latest["index"] if latest else 0,
                           "age_ms": int(self.checkpoint_age_ms())},
            "def_version": getattr(bundle, "def_version", 0) if bundle is not None else 0,
            "policy_version": getattr(bundle, "policy_version", 0) if bundle is not None else 0,
            "warmup": self.ingress_gate() == "warmup", "ingress_gate": self.ingress_gate(),
            "finalized_horizon_index": self.finalized_horizon_index(),
            "finalized_horizon_ts_ns": self.store.horizons(),
            "dedup": {"capacity": self._dedup_capacity, "occupancy": len(self._dedup)},
            "replay_sessions": {s: {"last_seq": seq} for s, seq in sorted(self.replay_sessions.items())},
            "unavailable_windows": [dict(w) for w in self.unavailable_windows],
        }

    def metrics_snapshot(self) -> dict:
        """Deterministic dump of the aggregate state plus its digest (metrics only)."""
        metrics = self.store.export()
        return {"part_id": self.part_id, "applied_index": self.applied_index, "metrics": metrics,
                "late": self.store.export_late(), "digest": digest_of(metrics)}

    # -- persistence hooks ------------------------------------------------------------------------
    def wal_entries(self, start_index: int = 1) -> list[dict]:
        """JSON-able WAL entries with index >= start_index still held in memory."""
        first = max(0, start_index - self._wal_first_index)
        return [{"index": e[0], "term": e[1], "commit_ns": e[2], "msg": e[3], "size": e[4]}
                for e in self._wal[first:]]

    def restore(self, entries: list[dict], manifest: dict | None = None) -> None:
        """Rebuild the partition from persisted WAL entries (and optionally a saved manifest).

        Entries keep their index and term (a gap in the indexes is closed up); dedup and
        replay sessions are rebuilt from them, and everything is applied at once. Entries
        that no longer parse are skipped.
        """
        manifest = manifest or {}
        term = max([int(e.get("term", 1)) for e in entries] + [int(manifest.get("term", 1) or 1), 1])
        self._reset(term=term, warmup=bool(manifest.get("warmup", False)))
        now = self.now_ns()
        for entry in sorted(entries, key=lambda e: e["index"]):
            try:
                event_id, ts, key, name, labels, value, _replay, session, seq = parse_event(entry["msg"], self.part_id)
            except MalformedEvent:
                continue
            index, commit_ns = int(entry["index"]), int(entry.get("commit_ns", now))
            if not self._wal:
                self._wal_first_index = index
            elif index <= self.commit_index:
                continue                        # the same entry stored twice
            else:
                index = self.commit_index + 1   # positions must stay contiguous; a gap is closed
            self.commit_index = index
            size = int(entry.get("size") or event_size(entry["msg"]))
            self._wal.append((index, int(entry.get("term", term)), commit_ns, entry["msg"], size, ts, key,
                              name, labels, value))
            self._queued_bytes += size
            if session is None:
                self._dedup.pop(event_id, None)
                self._dedup[event_id] = (index, int(entry.get("term", term)), commit_ns)
            else:
                self.replay_sessions[session] = max(seq, self.replay_sessions.get(session, -1))
        for session, info in (manifest.get("replay_sessions") or {}).items():
            last_seq = int(info.get("last_seq", -1))
            self.replay_sessions[session] = max(last_seq, self.replay_sessions.get(session, -1))
        if self._wal:
            self.applied_index = self._wal_first_index - 1
        self.apply_pending()


def _apply_entries(wal: list, start: int, end: int, store: AggregateStore, key_last: dict,
                   now: int) -> tuple[int, int, int]:
    """Apply wal[start:end] to ``store``; returns (applied, skipped, bytes). The hot loop."""
    apply = store.apply
    store.refresh_knobs()
    applied = skipped = done_bytes = 0
    for position in range(start, end):
        index, _term, _commit, _msg, size, ts, key, name, labels, value = wal[position]
        done_bytes += size
        if key_last.get(key, 0) >= index:      # per-key last-event-wins
            skipped += 1
            continue
        key_last[key] = index
        apply(ts, name, labels, value, now)
        applied += 1
    return applied, skipped, done_bytes
