# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): a replay run (or one time slice of it).

``ReplayRun`` ties a historic source, a cursor store and the cluster client together: it
plans (what is left per partition), then runs one worker thread per partition (up to
``max_parallel_partitions``; each runs a ``partition.PartitionReplay``), polls the lags
for the throttle, publishes progress and metrics every ``progress_interval_s``, and stops
at the time budget, on a stop request, on critical lag or on an error that ends the run.
Open one with ``engine.open_run``; ``docs/replay.md`` explains the guarantees.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import looks_like_readiness, normalize_readiness
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import progress as progress_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import throttle as throttle_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.audit import BatchAuditLog, SummaryRecords
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import build_config
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import Cursor, parse_status
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.partition import PartitionReplay
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import position_json
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sender import SenderFatal
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source_sql import UnorderableRows
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until


# Partition states that need no more work in this run (a refused partition needs its rows fixed).
FINISHED = ("done", "stopped", "refused")
# A time slice starts a partition at the throttle rate its cursor recorded (when above
# initial_rate, which stays the starting floor as in a first slice) if that cursor is at most
# this old (seconds); an older rate says little about the cluster now: initial_rate.
RATE_RESUME_MAX_AGE_S = 600.0


class ReplayRun(object):  # pylint: disable=too-many-instance-attributes
    """One replay run (or one time slice of it) for the partitions given in the config.

    ``config`` is a mapping of ``config.ReplayConfig`` options (or a ReplayConfig).
    ``source_factory`` (optional) opens a private source per worker thread (SQLite
    connections must not be shared between threads); without it the shared ``source`` is
    used under a lock. ``lag_fetch`` returns ``{part_id: (apply_lag_ms, replication_lag_ms)}``.
    ``clock`` and ``sleep`` replace the monotonic clock and the wait (the default wait wakes up on a stop request).
    """

    def __init__(self, config, client, source, cursor_store, *, source_factory=None, lag_fetch=None,
                 progress_callback=None, clock=time.monotonic, sleep=None):
        self.cfg = build_config(config)
        self.run_id = self.cfg.run_id
        self.client = client
        self.source = source
        self.store = cursor_store
        self.source_factory = source_factory
        self.lag_fetch = lag_fetch or (lambda: throttle_mod.read_partition_lags(client))
        self.progress_callback = progress_callback
        self.clock = clock
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.warnings = []
        self.progress = progress_mod.ProgressTracker(clock=clock)
        self.operator = operator_identity(self.cfg.operator)
        self.summary = SummaryRecords(client, self.run_id, self.operator, self.cfg.cp_audit, self.warnings)
        self.audit = None                       # the BatchAuditLog of the slice being run
        self.dead_letter_lock = threading.Lock()
        self._source_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._senders = {}
        self._running = 0                       # partitions being replayed right now (reader choice)
        self._running_lock = threading.Lock()
        self.finished_this_slice = False        # a partition reached done/stopped in this call
        self.throttle = None
        self._resume_rates = {}                 # part_id -> the throttle rate its cursor recorded
        if self.cfg.throttle:
            self.throttle = throttle_mod.Throttle(throttle_mod.ThrottleSettings(
                apply_lag_threshold_ms=self.cfg.apply_lag_threshold_ms,
                replication_lag_threshold_ms=self.cfg.replication_lag_threshold_ms,
                critical_factor=self.cfg.critical_factor, setpoint_ratio=self.cfg.setpoint_ratio,
                initial_rate=self.cfg.initial_rate, max_rate=self.cfg.max_rate), clock=clock)
        self.pause = throttle_mod.PauseFlag(self.cfg.pause_file, cursor_store, self.run_id, clock=clock)
        self.fatal = None
        self.aborted = None
        self.interrupted = False
        self.dedup_mode = "replay_session" if self.cfg.use_replay_sessions else "event_id"

    # ------------------------------------------------------------------ planning
    def part_ids(self):
        """Partitions of this run: the configured list, else every partition in the source."""
        if self.cfg.part_ids is not None:
            return list(self.cfg.part_ids)
        with self._source_lock:
            return [str(p) for p in self.source.partitions()]

    def plan(self):
        """What a run would do, without sending: per partition events left, range, estimate."""
        rate = float(self.cfg.estimated_rate)
        parts = {part_id: self._plan_partition(part_id, rate) for part_id in self.part_ids()}
        todo = sum(p["events_remaining"] for p in parts.values() if p["status"] not in FINISHED)
        lanes = max(1, min(self.cfg.max_parallel_partitions, len(parts) or 1))
        longest = max([p["estimated_duration_s"] for p in parts.values()] or [0.0])
        return {"run_id": self.run_id, "partitions": parts, "events_remaining": todo,
                "estimated_rate_eps_per_partition": rate,
                "estimated_duration_s": round(max(longest, todo / (rate * lanes)), 1),
                "done": all(p["status"] in FINISHED or p["events_remaining"] == 0 for p in parts.values()),
                "refused": [p["report"] for p in parts.values() if p["status"] == "refused"]}

    def _plan_partition(self, part_id, rate):
        cursor = self.store.load(self.run_id, part_id)
        if cursor is not None and cursor.throttle_rate and cursor.throttle_rate > self.cfg.initial_rate \
                and time.time() - cursor.updated_at <= RATE_RESUME_MAX_AGE_S:
            self._resume_rates[part_id] = cursor.throttle_rate
        state, report = parse_status(cursor.status if cursor else None)
        try:
            with self._source_lock:
                info = self.source.plan(part_id, after=cursor.position if cursor else None)
        except UnorderableRows as exc:
            # only this partition is refused: the others are planned and replayed
            state, report, info = "refused", exc.report(), {}
        remaining = int(info.get("events") or 0)
        counts = (cursor.counts if cursor else None) or {}
        done = cursor.events_done if cursor else 0
        return {
            "status": state, "events_done": done,
            "duplicates_skipped": int(counts.get("duplicates_skipped", 0)),
            "dead_lettered": int(counts.get("dead_lettered", 0)),
            "retry_expired": int(counts.get("retry_expired", 0)),
            "events_remaining": remaining, "events_total": done + remaining,
            "position": list(cursor.position) if cursor and cursor.position is not None else None,
            "first_position": position_json(info.get("first_position")),
            "last_position": position_json(info.get("last_position")),
            "min_ts_ns": info.get("min_ts_ns"), "max_ts_ns": info.get("max_ts_ns"),
            "estimated_duration_s": round(remaining / rate, 1), "report": report,
        }

    # ------------------------------------------------------------------ running
    def request_stop(self):
        """Ask every worker to finish its in-flight batch, commit and return (signals)."""
        self.interrupted = True
        self._stop.set()

    def stopping(self):
        """True once the run is to stop (time budget, stop request, critical lag, fatal error)."""
        return self._stop.is_set()

    def run(self, time_budget_s=None):
        """Replay until done, stopped, aborted or ``time_budget_s`` elapsed; returns progress."""
        # Pages of events stream through this process: collect cycles in rarer, larger passes
        # (see wire.bulk_gc; measured at 15-20 % of the worker's CPU otherwise).
        with wire.bulk_gc():
            started_wall = time.time()
            todo = self._start_slice(self.plan())
            self._work(todo, time_budget_s)
            self.audit.close()
            self._publish(final=True)        # first: a failed push is a warning of this result
            result = self._result(started_wall)
            if result["done"] and self.finished_this_slice:
                self.summary.write("run_end", events_done=result["events_done"], stopped=result["stopped"])
            return result

    def _start_slice(self, plan):
        """Take over the plan's progress (and the throttle rates the cursors recorded) and open the
        audit trail; returns the partitions to replay."""
        self._check_sessions()
        for part_id, p in plan["partitions"].items():
            if self.throttle is not None and part_id in self._resume_rates:
                self.throttle.resume(part_id, self._resume_rates[part_id])
            self.progress.add(part_id, p["events_total"], p["events_done"], 0, p["position"], p["status"],
                              p["max_ts_ns"])
            # rows passed without sending in earlier time slices (kept in the cursor)
            self.progress.update(part_id, duplicates_skipped=p["duplicates_skipped"], dead_lettered=p["dead_lettered"],
                                 retry_expired=p["retry_expired"])
            if p["report"]:
                self.progress.update(part_id, report=p["report"])
        if all(p["events_done"] == 0 and p["status"] == "pending" for p in plan["partitions"].values()):
            self.summary.write("run_start", events_total=plan["events_remaining"], partitions=sorted(plan["partitions"]))
        self.audit = BatchAuditLog(self.cfg.audit_file, self.run_id, self.operator)
        for report in plan["refused"]:
            self.warn("partition %s refused: %s" % (report["part_id"], report["message"]))
        return [pid for pid, p in plan["partitions"].items()
                if p["status"] not in ("done", "refused") and (p["status"] != "stopped" or self.cfg.retry_stopped)]

    def _work(self, todo, time_budget_s):
        """Run the worker threads over ``todo`` until they end or the run must stop."""
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
                   for i in range(min(self.cfg.max_parallel_partitions, len(todo)))]
        for thread in threads:
            thread.start()
        self._watch(threads, self.clock() + time_budget_s if time_budget_s else None)
        if poller is not None:
            poller.stop()
            if poller.errors:
                self.warnings.append("lag polling failed %d time(s); last error: %s" % (poller.errors, poller.last_error))

    def _watch(self, threads, deadline):
        """While workers run: stop at the deadline or on critical lag, publish progress."""
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
                next_report = now + self.cfg.progress_interval_s
            alive = [t for t in threads if t.is_alive()]
            if alive:
                alive[0].join(timeout=0.1)

    def _publish(self, final=False):
        snap = self.progress.snapshot()
        if self.throttle is not None:
            for pid in snap["partitions"]:
                apply_lag, repl_lag = self.throttle.lags(pid)
                snap["partitions"][pid]["apply_lag_ms"] = apply_lag
                snap["partitions"][pid]["replication_lag_ms"] = repl_lag
                self.progress.update(pid, apply_lag_ms=apply_lag, replication_lag_ms=repl_lag,
                                     target_rate=self.throttle.rate(pid))
        if self.cfg.metrics_textfile or self.cfg.pushgateway_url:
            text = progress_mod.render_metrics(snap, self.run_id)
            try:
                if self.cfg.metrics_textfile:
                    progress_mod.write_metrics_textfile(self.cfg.metrics_textfile, text)
                if self.cfg.pushgateway_url and final:
                    progress_mod.push_metrics(self.cfg.pushgateway_url, self.run_id, text)
            except Exception as exc:  # pylint: disable=broad-except  # observability must not kill the replay
                self.warn("could not publish replay metrics: %s" % exc)
        if self.progress_callback is not None and not final:
            self.progress_callback(snap)

    def _check_sessions(self):
        if not self.cfg.use_replay_sessions:
            self.warnings.append(
                "replay sessions disabled (use_replay_sessions: false): duplicates after a crash are "
                "caught only by event_id dedup, which holds for client_retry_window_s and "
                "dedup_capacity_per_partition; a resume after that window may apply events twice")
            return
        try:
            state = self.client.get_json("state")
        except CeptraError as exc:
            self.warnings.append("could not read /v1/state to check replay-session support: %s" % exc.message)
            return
        parts = state.get("partitions") if isinstance(state, dict) else None
        if isinstance(parts, list) and parts and not any(
                isinstance(p, dict) and "replay_sessions" in p for p in parts):
            self.dedup_mode = "event_id"
            self.warnings.append(
                "the cluster does not report replay sessions in /v1/state: falling back to event_id "
                "dedup (bounded by client_retry_window_s and dedup_capacity_per_partition)")

    def _result(self, started_wall):
        for part_id, sender in sorted(self._senders.items()):
            if sender.out_of_order_commits:
                self.warnings.append(
                    "partition %s: the cluster committed %d event(s) after refusing an earlier one in the same "
                    "request; %d refused event(s) were resent with event_id dedup instead of the replay session "
                    "(applied once, but out of order)" % (part_id, sender.out_of_order_commits, sender.gap_resends))
        snap = self.progress.snapshot()
        for part_id, sender in self._senders.items():
            # requests of this slice that failed or were cut short (retried: not in "retries", which counts acked batches)
            snap["partitions"][part_id]["failed_requests"] = sender.failed_requests
        if self.throttle is not None:
            for pid, p in snap["partitions"].items():
                p["apply_lag_ms"], p["replication_lag_ms"] = self.throttle.lags(pid)
        states = [p["status"] for p in snap["partitions"].values()]
        stopped = [p["report"] for p in snap["partitions"].values() if p["status"] == "stopped" and p["report"]]
        refused = [p["report"] for p in snap["partitions"].values() if p["status"] == "refused" and p["report"]]
        done = bool(states) and all(s in FINISHED for s in states) and not self.aborted and not self.fatal
        if not states:
            done = True
        snap.update({
            "run_id": self.run_id, "done": done, "changed": snap["events_sent"] > 0,
            "stopped": stopped, "refused": refused, "aborted": self.aborted, "error": self.fatal,
            "interrupted": self.interrupted and not done, "dedup": self.dedup_mode,
            "warnings": list(self.warnings), "started_at": started_wall, "finished_at": time.time(),
        })
        return snap

    # ------------------------------------------------------------------ what a partition's replay uses
    def _run_partition(self, part_id):
        source = self.source_factory() if self.source_factory else self.source
        with self._running_lock:
            self._running += 1
        try:
            replay = PartitionReplay(self, part_id, source)
            self._senders[part_id] = replay.sender
            replay.replay()
        except SenderFatal as exc:
            self.fatal = exc.message
            self._stop.set()
            self.progress.update(part_id, status="failed")
        except UnorderableRows as exc:   # rows with a NULL ordering key appeared after the plan
            self.progress.update(part_id, status="refused", report=exc.report())
            self.warn("partition %s refused: %s" % (part_id, exc.message))
        except Exception as exc:  # pylint: disable=broad-except  # a source or store failure: stop this partition, say why
            report = {"part_id": part_id, "reason": "WORKER_ERROR", "message": "%s: %s" % (type(exc).__name__, exc)}
            self.progress.update(part_id, status="failed", report=report)
            self.warnings.append("partition %s failed: %s" % (part_id, report["message"]))
        finally:
            with self._running_lock:
                self._running -= 1
            if source is not self.source:
                source.close()

    def running_alone(self):
        """True while at most one partition is being replayed (its reader then reads ahead)."""
        return self._running <= 1

    def read_page(self, source, part_id, after, after_seq):
        """The next page of a partition: ``read_wire`` (events carry their wire line and a
        summary instead of the decoded payload: less to build and to collect)."""
        if source is self.source:
            with self._source_lock:
                return source.read_wire(part_id, after, after_seq, self.cfg.batch_events)
        return source.read_wire(part_id, after, after_seq, self.cfg.batch_events)

    def commit(self, part_id, acked, status):
        """Commit the cursor of ``acked`` (a partition.Acked) with the partition's counts of rows
        passed without sending."""
        p = self.progress.parts.get(part_id)
        counts = {}
        if p is not None:
            counts = {k: v for k, v in (("duplicates_skipped", p.duplicates_skipped),
                                        ("dead_lettered", p.dead_lettered), ("retry_expired", p.retry_expired)) if v}
        rate = self.throttle.rate(part_id) if self.throttle is not None else None
        cursor = Cursor(acked.position, acked.seq, acked.done, acked.nbytes, status, time.time(), counts or None, rate)
        with self._store_lock:
            self.store.commit(self.run_id, part_id, cursor)

    def warn(self, message):
        """Add a warning to the run's result (once)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def sleep_unless_stopped(self, seconds):
        """Wait ``seconds`` (a stop request ends the wait early)."""
        if seconds > 0:
            self.sleep(seconds)

    def resolve_leader(self, part_id, reason):
        """NOT_LEADER: re-read /v1/state (the routing layer learns the new leader) and retry."""
        try:
            self.client.get_json("state")
        except CeptraError:  # the retry itself will tell whether the cluster is reachable
            pass
        self.sleep_unless_stopped(0.05)

    def wait_durability(self, part_id):
        """PERMANENT_DURABILITY: wait (at most durability_wait_s) until the partition's readiness
        names no durability fence; True when it cleared."""
        self.progress.update(part_id, status="fenced")
        poll = poll_until(lambda: (self._fence_cleared(part_id), None), float(self.cfg.durability_wait_s), 0.5,
                          first=(False, None), stop=self._stop.is_set, sleep=self.sleep_unless_stopped,
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
