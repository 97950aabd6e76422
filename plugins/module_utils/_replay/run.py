# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay runner.

``ReplayRun`` ties a historic source, a cursor store, the sender, the throttle and the
progress/audit outputs together: one sender thread per partition (up to
``max_parallel_partitions``), strict order within a partition, a cursor commit after
every acked batch, a bounded time slice or a run to completion. Page reading (inline or
read-ahead) and the dead-letter file are in ``reader``.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as encode_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayConfigError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.reader import (
    AdaptivePageReader, dead_letter_write, jsonable_position as _jsonable)
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import progress as progress_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import (
    looks_like_readiness,
    normalize_readiness,
)
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import throttle as throttle_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sender import (
    PartitionSender, SenderFatal, encode_event)

DEFAULTS = {
    "run_id": None, "part_ids": None, "batch_events": 2000, "max_window": 1024,
    "use_replay_sessions": True, "on_bad_row": "stop", "dead_letter_path": None,
    "max_parallel_partitions": 8, "throttle": True, "apply_lag_threshold_ms": 200.0,
    "replication_lag_threshold_ms": 250.0, "critical_factor": 5.0, "setpoint_ratio": 0.4,
    "initial_rate": 500.0, "max_rate": None, "pause_file": None, "metrics_textfile": None,
    "pushgateway_url": None, "audit_file": None, "operator": None, "durability_wait_s": 300.0,
    "estimated_rate": 2000.0, "retry_stopped": False, "cp_audit": True,
    "max_event_bytes": 1048576, "progress_interval_s": 1.0, "commit_interval_s": 0.25,
}
BAD_ROW_POLICIES = ("stop", "dead_letter")
STOPPED_PREFIX = "stopped:"


def build_config(options):
    """Merge ``options`` over DEFAULTS and validate; raises ReplayConfigError."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ReplayConfigError("unknown replay option(s): %s" % ", ".join(unknown))
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in options.items() if v is not None})
    if not cfg["run_id"] or not isinstance(cfg["run_id"], str) or "/" in cfg["run_id"]:
        raise ReplayConfigError("run_id is required: a name for this replay without '/', e.g. incident-4711")
    if cfg["on_bad_row"] not in BAD_ROW_POLICIES:
        raise ReplayConfigError("on_bad_row must be one of %s, got %r" % (", ".join(BAD_ROW_POLICIES), cfg["on_bad_row"]))
    if cfg["on_bad_row"] == "dead_letter" and not cfg["dead_letter_path"]:
        raise ReplayConfigError("on_bad_row: dead_letter needs dead_letter_path (a JSONL file to write bad rows to)")
    for key in ("batch_events", "max_window", "max_parallel_partitions"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ReplayConfigError("%s must be a whole number >= 1, got %r" % (key, cfg[key]))
    for key in ("apply_lag_threshold_ms", "replication_lag_threshold_ms", "initial_rate", "estimated_rate"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] <= 0:
            raise ReplayConfigError("%s must be a positive number, got %r" % (key, cfg[key]))
    if cfg["part_ids"] is not None:
        cfg["part_ids"] = [str(p) for p in cfg["part_ids"]]
    return cfg


def parse_status(status):
    """Split a cursor status into (state, report dict or None)."""
    status = status or "pending"
    if status.startswith(STOPPED_PREFIX):
        try:
            return "stopped", json.loads(status[len(STOPPED_PREFIX):])
        except ValueError:
            return "stopped", {"message": status[len(STOPPED_PREFIX):]}
    return status, None


def _make_cursor(position, seq, done, nbytes, status, counts=None):
    try:
        from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import Cursor
    except ImportError:  # the cursor store module is optional for fakes in unit tests
        Cursor = None
    values = (tuple(position) if position is not None else None, seq, done, nbytes, status, time.time(),
              counts or None)
    return Cursor(*values) if Cursor is not None else values


class ReplayRun(object):
    """One replay run (or one time slice of it) for the partitions given in the config.

    ``source_factory`` (optional) opens a private source per worker thread (SQLite
    connections must not be shared between threads); without it the shared ``source``
    is used under a lock. ``lag_fetch`` returns {part_id: (apply_lag_ms, replication_lag_ms)}.
    """

    def __init__(self, config, client, source, cursor_store, *, source_factory=None, lag_fetch=None,
                 progress_callback=None, clock=time.monotonic, sleep=time.sleep):
        self.cfg = build_config(config)
        self.run_id = self.cfg["run_id"]
        self.client = client
        self.source = source
        self.store = cursor_store
        self.source_factory = source_factory
        self.lag_fetch = lag_fetch or (lambda: throttle_mod.read_partition_lags(client))
        self.progress_callback = progress_callback
        self.clock = clock
        self.sleep = sleep
        self.warnings = []
        self.progress = progress_mod.ProgressTracker(clock=clock)
        self.operator = operator_identity(self.cfg["operator"])
        self._stop = threading.Event()
        self._source_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._dead_letter_lock = threading.Lock()
        self._senders = {}
        self._running = 0                   # partitions being replayed right now (reader choice)
        self._running_lock = threading.Lock()
        self._finished_this_slice = False   # a partition reached done/stopped in this call
        self.throttle = None
        if self.cfg["throttle"]:
            self.throttle = throttle_mod.Throttle(throttle_mod.ThrottleSettings(
                apply_lag_threshold_ms=self.cfg["apply_lag_threshold_ms"],
                replication_lag_threshold_ms=self.cfg["replication_lag_threshold_ms"],
                critical_factor=self.cfg["critical_factor"], setpoint_ratio=self.cfg["setpoint_ratio"],
                initial_rate=self.cfg["initial_rate"], max_rate=self.cfg["max_rate"]), clock=clock)
        self.pause = throttle_mod.PauseFlag(self.cfg["pause_file"], cursor_store, self.run_id, clock=clock)
        self.fatal = None
        self.aborted = None
        self.interrupted = False
        self.dedup_mode = "replay_session" if self.cfg["use_replay_sessions"] else "event_id"

    # ------------------------------------------------------------------ planning
    def part_ids(self):
        """Partitions of this run: the configured list, else every partition in the source."""
        if self.cfg["part_ids"] is not None:
            return list(self.cfg["part_ids"])
        with self._source_lock:
            return [str(p) for p in self.source.partitions()]

    def plan(self):
        """What a run would do, without sending: per partition events left, range, estimate."""
        rate = float(self.cfg["estimated_rate"])
        parts = {}
        for part_id in self.part_ids():
            cursor = self.store.load(self.run_id, part_id)
            state, report = parse_status(cursor.status if cursor else None)
            with self._source_lock:
                info = self.source.plan(part_id, after=cursor.position if cursor else None)
            remaining = int(info.get("events") or 0)
            counts = (cursor.counts if cursor else None) or {}
            parts[part_id] = {
                "status": state, "events_done": cursor.events_done if cursor else 0,
                "duplicates_skipped": int(counts.get("duplicates_skipped", 0)),
                "dead_lettered": int(counts.get("dead_lettered", 0)),
                "events_remaining": remaining,
                "events_total": (cursor.events_done if cursor else 0) + remaining,
                "position": list(cursor.position) if cursor and cursor.position is not None else None,
                "first_position": _jsonable(info.get("first_position")),
                "last_position": _jsonable(info.get("last_position")),
                "min_ts_ns": info.get("min_ts_ns"), "max_ts_ns": info.get("max_ts_ns"),
                "estimated_duration_s": round(remaining / rate, 1), "report": report,
            }
        todo = sum(p["events_remaining"] for p in parts.values() if p["status"] not in ("done", "stopped"))
        lanes = max(1, min(self.cfg["max_parallel_partitions"], len(parts) or 1))
        longest = max([p["estimated_duration_s"] for p in parts.values()] or [0.0])
        return {"run_id": self.run_id, "partitions": parts, "events_remaining": todo,
                "estimated_rate_eps_per_partition": rate,
                "estimated_duration_s": round(max(longest, todo / (rate * lanes)), 1),
                "done": all(p["status"] in ("done", "stopped") or p["events_remaining"] == 0
                            for p in parts.values())}

    # ------------------------------------------------------------------ running
    def request_stop(self):
        """Ask every worker to finish its in-flight batch, commit and return (signals)."""
        self.interrupted = True
        self._stop.set()

    def run(self, time_budget_s=None):
        """Replay until done, stopped, aborted or ``time_budget_s`` elapsed; returns progress."""
        # Pages of events stream through this process: collect cycles in rarer, larger passes
        # (see wire.bulk_gc; measured at 15-20 % of the worker's CPU otherwise).
        with encode_mod.bulk_gc():
            return self._run(time_budget_s)

    def _run(self, time_budget_s):
        started_wall = time.time()
        plan = self.plan()
        self._check_sessions()
        first_slice = all(p["events_done"] == 0 and p["status"] == "pending" for p in plan["partitions"].values())
        for part_id, p in plan["partitions"].items():
            self.progress.add(part_id, p["events_total"], p["events_done"], 0, p["position"],
                              p["status"], p["max_ts_ns"])
            # rows passed without sending in earlier time slices (kept in the cursor)
            self.progress.update(part_id, duplicates_skipped=p["duplicates_skipped"],
                                 dead_lettered=p["dead_lettered"])
            if p["report"]:
                self.progress.update(part_id, report=p["report"])
        if first_slice and self.cfg["cp_audit"]:
            progress_mod.cp_audit(self.client, self._audit_details("run_start", events_total=plan["events_remaining"],
                                                                   partitions=sorted(plan["partitions"])), self.warnings)
        self.audit = progress_mod.BatchAuditLog(self.cfg["audit_file"], self.run_id, self.operator)
        todo = [pid for pid, p in plan["partitions"].items()
                if p["status"] not in ("done",) and (p["status"] != "stopped" or self.cfg["retry_stopped"])]
        work = list(todo)
        work_lock = threading.Lock()

        def worker():
            while not self._stop.is_set():
                with work_lock:
                    if not work:
                        return
                    part_id = work.pop(0)
                self._run_partition(part_id)

        poller = None
        if self.throttle is not None and todo:
            poller = throttle_mod.LagPoller(self.throttle, self.lag_fetch, todo)
            poller.poll_once()
            poller.start()
        threads = [threading.Thread(target=worker, name="replay-worker-%d" % i, daemon=True)
                   for i in range(min(self.cfg["max_parallel_partitions"], len(todo)))]
        for t in threads:
            t.start()
        deadline = self.clock() + time_budget_s if time_budget_s else None
        next_report = self.clock()
        while any(t.is_alive() for t in threads):
            now = self.clock()
            if deadline is not None and now >= deadline:
                self._stop.set()
            if self.throttle is not None and self.throttle.abort_reason and not self.aborted:
                self.aborted = "critical lag, run aborted: %s" % self.throttle.abort_reason
                self._stop.set()
            if now >= next_report:
                self._publish()
                next_report = now + self.cfg["progress_interval_s"]
            alive = [t for t in threads if t.is_alive()]
            if alive:
                alive[0].join(timeout=0.1)
        if poller is not None:
            poller.stop()
            if poller.errors:
                self.warnings.append("lag polling failed %d time(s); last error: %s" % (poller.errors, poller.last_error))
        self.audit.close()
        result = self._result(started_wall)
        self._publish(final=True)
        if result["done"] and self.cfg["cp_audit"] and self._finished_this_slice:
            progress_mod.cp_audit(self.client, self._audit_details(
                "run_end", events_done=result["events_done"], stopped=result["stopped"]), self.warnings)
        return result

    def _publish(self, final=False):
        snap = self.progress.snapshot()
        if self.throttle is not None:
            for pid in snap["partitions"]:
                apply_lag, repl_lag = self.throttle.lags(pid)
                snap["partitions"][pid]["apply_lag_ms"] = apply_lag
                snap["partitions"][pid]["replication_lag_ms"] = repl_lag
                self.progress.update(pid, apply_lag_ms=apply_lag, replication_lag_ms=repl_lag,
                                     target_rate=self.throttle.rate(pid))
        if self.cfg["metrics_textfile"] or self.cfg["pushgateway_url"]:
            text = progress_mod.render_metrics(snap, self.run_id)
            try:
                if self.cfg["metrics_textfile"]:
                    progress_mod.write_metrics_textfile(self.cfg["metrics_textfile"], text)
                if self.cfg["pushgateway_url"] and final:
                    progress_mod.push_metrics(self.cfg["pushgateway_url"], self.run_id, text)
            except Exception as exc:  # observability must not kill the replay
                msg = "could not publish replay metrics: %s" % exc
                if msg not in self.warnings:
                    self.warnings.append(msg)
        if self.progress_callback is not None and not final:
            self.progress_callback(snap)

    def _check_sessions(self):
        if not self.cfg["use_replay_sessions"]:
            self.warnings.append(
                "replay sessions disabled (use_replay_sessions: false): duplicates after a crash are "
                "caught only by event_id dedup, which holds for client_retry_window_s and "
                "dedup_capacity_per_partition; a resume after that window may apply events twice")
            return
        try:
            state = self.client.get_json("state")
        except Exception as exc:
            self.warnings.append("could not read /v1/state to check replay-session support: %s"
                                 % getattr(exc, "message", exc))
            return
        parts = state.get("partitions") if isinstance(state, dict) else None
        if isinstance(parts, list) and parts and not any(
                isinstance(p, dict) and "replay_sessions" in p for p in parts):
            self.dedup_mode = "event_id"
            self.warnings.append(
                "the cluster does not report replay sessions in /v1/state: falling back to event_id "
                "dedup (bounded by client_retry_window_s and dedup_capacity_per_partition)")

    def _audit_details(self, event, **extra):
        details = {"event": event, "run_id": self.run_id, "operator": self.operator,
                   "host": os.uname()[1], "ts": time.time()}
        details.update(extra)
        return details

    def _result(self, started_wall):
        for part_id, sender in sorted(self._senders.items()):
            if sender.out_of_order_commits:
                self.warnings.append(
                    "partition %s: the cluster committed %d event(s) after refusing an earlier one in the same "
                    "request; %d refused event(s) were resent with event_id dedup instead of the replay session "
                    "(applied once, but out of order)" % (part_id, sender.out_of_order_commits, sender.gap_resends))
        snap = self.progress.snapshot()
        if self.throttle is not None:
            for pid, p in snap["partitions"].items():
                p["apply_lag_ms"], p["replication_lag_ms"] = self.throttle.lags(pid)
        states = [p["status"] for p in snap["partitions"].values()]
        stopped = [p["report"] for p in snap["partitions"].values() if p["status"] == "stopped" and p["report"]]
        done = bool(states) and all(s in ("done", "stopped") for s in states) and not self.aborted and not self.fatal
        if not states:
            done = True
        snap.update({
            "run_id": self.run_id, "done": done, "changed": snap["events_sent"] > 0,
            "stopped": stopped, "aborted": self.aborted, "error": self.fatal,
            "interrupted": self.interrupted and not done, "dedup": self.dedup_mode,
            "warnings": list(self.warnings), "started_at": started_wall, "finished_at": time.time(),
        })
        return snap

    # ------------------------------------------------------------------ one partition
    def _commit(self, part_id, position, seq, done, nbytes, status):
        """Commit the cursor, with the partition's counts of rows passed without sending."""
        p = self.progress.parts.get(part_id)
        counts = {}
        if p is not None:
            counts = {k: v for k, v in (("duplicates_skipped", p.duplicates_skipped),
                                        ("dead_lettered", p.dead_lettered)) if v}
        with self._store_lock:
            self.store.commit(self.run_id, part_id, _make_cursor(position, seq, done, nbytes, status, counts))

    def _read(self, source, part_id, position, seq, limit):
        # read_wire (historic sources): the same rows and checks, events carry their wire
        # line and a summary instead of the decoded payload (less to build and to collect).
        read = getattr(source, "read_wire", None) or source.read
        if source is self.source:
            with self._source_lock:
                return read(part_id, position, seq, limit)
        return read(part_id, position, seq, limit)

    def _run_partition(self, part_id):
        source = self.source_factory() if self.source_factory else self.source
        with self._running_lock:
            self._running += 1
        try:
            self._replay_partition(part_id, source)
        except SenderFatal as exc:
            self.fatal = str(exc)
            self._stop.set()
            self.progress.update(part_id, status="failed")
        except Exception as exc:  # source or store failure: stop this partition, say why
            report = {"part_id": part_id, "reason": "WORKER_ERROR", "message": "%s: %s" % (type(exc).__name__, exc)}
            self.progress.update(part_id, status="failed", report=report)
            self.warnings.append("partition %s failed: %s" % (part_id, report["message"]))
        finally:
            with self._running_lock:
                self._running -= 1
            if source is not self.source:
                source.close()

    def _replay_partition(self, part_id, source):
        cursor = self.store.load(self.run_id, part_id)
        position = tuple(cursor.position) if cursor and cursor.position is not None else None
        seq = cursor.seq if cursor else 0
        done = cursor.events_done if cursor else 0
        nbytes = cursor.bytes_done if cursor else 0
        self.progress.update(part_id, status="running", report=None)
        sender = PartitionSender(
            self.client, part_id, self.run_id, use_sessions=self.cfg["use_replay_sessions"],
            max_window=self.cfg["max_window"], resolve_leader=self._resolve_leader,
            wait_durability=self._wait_durability, should_stop=self._stop.is_set, sleep=self._interruptible_sleep)
        self._senders[part_id] = sender
        reader = AdaptivePageReader(lambda after, after_seq: self._read(source, part_id, after, after_seq,
                                                                        self.cfg["batch_events"]), position, seq,
                                    alone=lambda: self._running <= 1)
        try:
            self._replay_pages(part_id, sender, reader, position, seq, done, nbytes)
        finally:
            reader.close()

    def _replay_pages(self, part_id, sender, reader, position, seq, done, nbytes):
        # Acked events since the last cursor commit. Requests are small (about 50 ms of the
        # partition's rate, for a smooth load on the cluster); the cursor and the audit
        # record are written per commit_interval_s of acked requests, so a durable commit
        # (an fsync) is not paid per request. Committing less often is still safe: a crash
        # resends more, and the replay session drops what the cluster already has.
        batch = {"events": 0}
        last_flush = [self.clock()]

        def flush():
            if batch["events"]:
                self._commit(part_id, position, seq, done, nbytes, "running")
                self.audit.record(part_id, batch["first"], batch["last"], batch["events"], batch["bytes"],
                                  batch["started"], batch["outcome"], duplicates=batch["duplicates"],
                                  retries=batch["retries"], requests=batch["requests"])
                batch.clear()
                batch["events"] = 0
            last_flush[0] = self.clock()

        pending, idx = [], 0
        # every line of this partition ends with the same session suffix (then replay_seq)
        suffix = encode_mod.session_suffix(self.run_id, part_id, self.cfg["use_replay_sessions"])
        try:
            while not self._stop.is_set():
                if self.pause.is_paused():
                    flush()
                    self.progress.update(part_id, status="paused")
                    self._interruptible_sleep(0.2)
                    continue
                self.progress.update(part_id, status="running")
                if idx >= len(pending):
                    pending, idx = reader.next_page(), 0
                    if not pending:
                        flush()
                        self._commit(part_id, position, seq, done, nbytes, "done")
                        self.progress.update(part_id, status="done")
                        self._finished_this_slice = True
                        if self.cfg["cp_audit"] and self.progress.parts[part_id].sent_this_run:
                            progress_mod.cp_audit(self.client, self._audit_details(
                                "partition_done", part_id=part_id, events_done=done, bytes_done=nbytes,
                                position=_jsonable(position)), self.warnings)
                        return
                limit = len(pending) - idx
                if self.throttle is not None:
                    limit = min(limit, self.throttle.suggested_batch(part_id, sender.window))
                # The usual case in one pass: the leading events that are ready to send as they
                # are (valid, with a wire line, within max_event_bytes). The loop below handles
                # the first other event (copy, bad row, oversize, an event without a wire line).
                window = pending[idx:idx + limit]
                lines = encode_mod.ready_lines(window, suffix, self.cfg["max_event_bytes"])
                chunk = window[:len(lines)]
                for ev in (window[len(lines):] if not chunk else ()):
                    if getattr(ev, "duplicate_of", None) is not None:
                        # a later copy of an event already in the history: never sent, never
                        # a bad row; the cursor moves past it once the rows before it are acked
                        if chunk:
                            break   # send the rows before it first
                        flush()
                        position, seq, done = ev.position, ev.seq, done + 1
                        self._skip_duplicate(part_id, ev, position, seq, done, nbytes)
                        idx += 1
                        break
                    problem = ev.error
                    line = None
                    if problem is None:
                        line = encode_event(ev, self.run_id, self.cfg["use_replay_sessions"], suffix)
                        if len(line) > self.cfg["max_event_bytes"]:
                            problem = "event is %d bytes, above max_event_bytes %d" % (
                                len(line), self.cfg["max_event_bytes"])
                    if problem is not None:
                        if chunk:
                            break   # send the good rows before it first
                        flush()
                        if not self._bad_row(part_id, ev, problem, position, seq, done, nbytes):
                            return
                        position, seq, done = ev.position, ev.seq, done + 1
                        idx += 1
                        break
                    chunk.append(ev)
                    lines.append(line)
                if not chunk:
                    continue
                if self.throttle is not None:
                    wait = self.throttle.wait_for(part_id, len(chunk))
                    if wait > 0:
                        self._interruptible_sleep(min(wait, 0.5))
                        continue
                started = time.time()
                result = sender.send(chunk, lines)
                if result.acked:
                    last = chunk[result.acked - 1]
                    position, seq = last.position, last.seq
                    done += result.acked
                    nbytes += result.acked_bytes
                    self.progress.record_batch(part_id, result.acked, result.acked_bytes, position,
                                               (last.event or {}).get("ts_ns"), result.retries, result.duplicates)
                    if not batch["events"]:
                        batch.update(first=chunk[0], started=started, bytes=0, duplicates=0, retries=0,
                                     requests=0, outcome="acked")
                    batch["events"] += result.acked
                    batch["last"] = last
                    batch["bytes"] += result.acked_bytes
                    batch["duplicates"] += result.duplicates
                    batch["retries"] += result.retries
                    batch["requests"] += result.requests
                    if result.acked < len(chunk):
                        batch["outcome"] = "partial"
                    idx += result.acked
                if result.stop is not None or result.interrupted or \
                        self.clock() - last_flush[0] >= self.cfg["commit_interval_s"]:
                    flush()
                if result.stop is not None:
                    report = dict(result.stop)
                    self._stop_partition(part_id, report, position, seq, done, nbytes)
                    self.audit.record(part_id, None, None, 0, 0, started, "stopped", report=report)
                    return
                if result.interrupted:
                    return
        finally:
            flush()

    def _stop_partition(self, part_id, report, position, seq, done, nbytes):
        self._commit(part_id, position, seq, done, nbytes, STOPPED_PREFIX + json.dumps(report, sort_keys=True))
        self.progress.update(part_id, status="stopped", report=report)
        self._finished_this_slice = True
        self.warnings.append("partition %s stopped at event %s (position %s): %s %s"
                             % (part_id, report.get("event_id"), report.get("position"),
                                report.get("reason"), report.get("message")))
        if self.cfg["cp_audit"]:
            progress_mod.cp_audit(self.client, self._audit_details("partition_stopped", **report), self.warnings)

    def _skip_duplicate(self, part_id, ev, position, seq, done, nbytes):
        """A second copy of an event (same event_id) in the history: commit the cursor past
        it, count it (``duplicates_skipped``, committed with the cursor) and record it in the
        batch audit."""
        p = self.progress.parts[part_id]
        self.progress.update(part_id, duplicates_skipped=p.duplicates_skipped + 1, done=p.done + 1,
                             position=position)
        self._commit(part_id, position, seq, done, nbytes, "running")
        raw_row = getattr(ev, "raw_row", None)
        event_id = raw_row.get("event_id") if isinstance(raw_row, dict) else None
        self.audit.record(part_id, ev, ev, 0, 0, time.time(), "duplicate_skipped", event_id=event_id,
                          duplicate_of=_jsonable(ev.duplicate_of))

    def _bad_row(self, part_id, ev, problem, position, seq, done, nbytes):
        """Apply the bad-row policy. Returns True to continue after the row."""
        raw_row = getattr(ev, "raw_row", None)
        event_id = (ev.event or {}).get("event_id") if isinstance(ev.event, dict) else None
        if event_id is None and isinstance(raw_row, dict):
            event_id = raw_row.get("event_id")
        report = {"part_id": part_id, "event_id": event_id, "position": _jsonable(ev.position), "seq": ev.seq,
                  "status": "BadRow", "reason": "BAD_ROW", "message": problem}
        if self.cfg["on_bad_row"] == "stop":
            self._stop_partition(part_id, report, position, seq, done, nbytes)
            return False
        raw_row = raw_row or (ev.event if isinstance(ev.event, dict) else None)
        with self._dead_letter_lock:
            # durable (fsync) before the cursor moves past the row: at least once in the file
            dead_letter_write(self.cfg["dead_letter_path"], part_id, ev.position, problem, raw_row)
        p = self.progress.parts[part_id]
        self.progress.update(part_id, dead_lettered=p.dead_lettered + 1, done=p.done + 1, position=ev.position)
        self._commit(part_id, ev.position, ev.seq, done + 1, nbytes, "running")
        self.audit.record(part_id, ev, ev, 1, 0, time.time(), "dead_letter", message=problem)
        msg = "partition %s: bad row(s) written to the dead-letter file %s" % (part_id, self.cfg["dead_letter_path"])
        if msg not in self.warnings:
            self.warnings.append(msg)
        return True

    # ------------------------------------------------------------------ cluster helpers
    def _interruptible_sleep(self, seconds):
        if seconds > 0:
            self._stop.wait(seconds) if self.sleep is time.sleep else self.sleep(seconds)

    def _resolve_leader(self, part_id, reason):
        """NOT_LEADER: re-read /v1/state (the routing layer learns the new leader) and retry."""
        try:
            self.client.get_json("state")
        except Exception:  # the retry itself will tell whether the cluster is reachable
            pass
        self._interruptible_sleep(0.05)

    def _wait_durability(self, part_id):
        """PERMANENT_DURABILITY: wait (at most durability_wait_s) until the partition's readiness
        names no durability fence; True when it cleared."""
        self.progress.update(part_id, status="fenced")
        poll = poll_until(lambda: (self._fence_cleared(part_id), None), float(self.cfg["durability_wait_s"]), 0.5,
                          first=(False, None), stop=self._stop.is_set, sleep=self._interruptible_sleep,
                          clock=self.clock)
        if poll.done:
            self.progress.update(part_id, status="running")
        return poll.done

    def _fence_cleared(self, part_id):
        """One look at /readyz: True when the partition reports no durability fence."""
        try:
            response = self.client.request("GET", "readyz", expected=(200, 503))
        except CeptraError:  # unreachable for a moment: keep waiting until the deadline
            return False
        if response.status != 200 and not looks_like_readiness(response.json):
            return False        # a 503 error body (overload), not a readiness answer
        # every readiness variant (list/dict partitions, reason objects, aliases)
        entry = normalize_readiness(response.json, response.status)["partitions"].get(str(part_id))
        return entry is None or "durability_fence" not in entry["reasons"]
