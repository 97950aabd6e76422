# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): one partition's replay, page by page.

``PartitionReplay`` runs in a worker thread of ``run.ReplayRun``: it reads the partition's
pages (``reader.AdaptivePageReader``), sends the events in order (``sender.PartitionSender``),
commits the cursor after acked events (at most every ``commit_interval_s``) and writes one
batch audit record per commit. A later copy of an event is not sent: it is passed with the
events around it (same request, same commit, same audit record) and counted. A bad row
goes to the bad-row policy (stop the partition, or the dead-letter file). :class:`Acked` is what the next cursor commit says.
"""

from __future__ import annotations

import time

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import parse_status, stopped_status
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.reader import AdaptivePageReader
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import dead_letter_write, position_json
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sender import (
    RETRY_EXPIRED, PartitionSender, SendResult, encode_event)


class Acked(object):
    """How far the partition got: the last row passed (``position``, ``seq``), rows done
    (sent and acked, or passed without sending) and bytes acked. A cursor holds the same."""

    __slots__ = ("position", "seq", "done", "nbytes")

    def __init__(self, cursor=None):
        self.position = tuple(cursor.position) if cursor and cursor.position is not None else None
        self.seq = cursor.seq if cursor else 0
        self.done = cursor.events_done if cursor else 0
        self.nbytes = cursor.bytes_done if cursor else 0

    def passed(self, event):
        """A row the cluster never sees (a skipped copy, a dead-lettered row) is done too."""
        self.position, self.seq, self.done = event.position, event.seq, self.done + 1


class Batch(object):
    """Rows passed since the last cursor commit (acked events, and the stored copies skipped
    among them): one batch audit record when committed."""

    def __init__(self):
        self.events = 0
        self.first = self.last = None
        self.started = None
        self.nbytes = self.duplicates = self.retries = self.requests = 0
        self.copies = []          # the copies skipped in this batch: {event_id, seq, position, duplicate_of}
        self.outcome = "acked"

    def add(self, rows, chunk, result, started):
        """Account the first rows of a window that are done: ``chunk`` (the window's events to
        send) as far as ``result`` (PartitionSender.send) acked them, and the copies among ``rows``."""
        if self.first is None:
            self.first, self.started = rows[0], started
        self.events += result.acked
        self.last = rows[-1]
        self.nbytes += result.acked_bytes
        self.duplicates += result.duplicates
        self.retries += result.retries
        self.requests += result.requests
        for event in (rows if len(rows) != result.acked else ()):   # rows done = events acked: no copy among them
            if event.duplicate_of is not None:
                event_id = event.raw_row.get("event_id") if isinstance(event.raw_row, dict) else None
                self.copies.append({"event_id": event_id, "seq": event.seq, "position": position_json(event.position),
                                    "duplicate_of": position_json(event.duplicate_of)})
        if result.acked < len(chunk):
            self.outcome = "partial"


def rows_done(rows, acked, sent):
    """How many leading ``rows`` (events to send, and copies not sent) are done when the first
    ``acked`` of the ``sent`` events to send among them were acked: every copy up to the first
    unacked event is done too (the event it copies came earlier in the order, so it was acked)."""
    if acked == sent:
        return len(rows)     # every event acked (the usual window): every row is done, no walk
    count = 0
    for index, event in enumerate(rows):
        if event.duplicate_of is None:
            if count == acked:
                return index
            count += 1
    return len(rows)


class PartitionReplay(object):
    """Replays one partition of ``run`` (a ``ReplayRun``) from its cursor, reading ``source``."""

    def __init__(self, run, part_id, source):
        self.run = run
        self.cfg = run.cfg
        self.part_id = part_id
        cursor = run.store.load(run.run_id, part_id)
        self.acked = Acked(cursor)
        # A partition stopped at a PERMANENT_RETRY_EXPIRED refusal: with retry_stopped that
        # event is passed, never resent (the cluster has it; the contract forbids a retry).
        state, report = parse_status(cursor.status if cursor else None)
        self.pass_seq = None
        if state == "stopped" and self.cfg.retry_stopped and (report or {}).get("reason") == RETRY_EXPIRED:
            self.pass_seq = report.get("seq")
        self.batch = Batch()
        self.last_flush = run.clock()
        self.page, self.index = [], 0
        self.stream_failure_warned = False
        # every line of this partition ends with the same session suffix (then replay_seq)
        self.suffix = wire.session_suffix(run.run_id, part_id, self.cfg.use_replay_sessions)
        self.sender = PartitionSender(
            run.client, part_id, run.run_id, use_sessions=self.cfg.use_replay_sessions,
            max_window=self.cfg.max_window, resolve_leader=run.resolve_leader,
            wait_durability=run.wait_durability, should_stop=run.stopping, sleep=run.sleep_unless_stopped,
            on_failure=self._stream_failed)
        self.reader = AdaptivePageReader(lambda after, after_seq: run.read_page(source, part_id, after, after_seq),
                                         self.acked.position, self.acked.seq, alone=run.running_alone)

    def replay(self):
        """Replay until the partition is done or stopped, the run stops, or a stop is requested."""
        self.run.progress.update(self.part_id, status="running", report=None)
        try:
            self._loop()
        finally:
            try:
                self.flush()
            finally:   # a failed commit must not leave the read-ahead thread behind
                self.reader.close()

    def _loop(self):
        run = self.run
        while not run.stopping():
            if run.pause.is_paused():
                self.flush()
                run.progress.update(self.part_id, status="paused")
                run.sleep_unless_stopped(0.2)
                continue
            run.progress.update(self.part_id, status="running")
            if self.index >= len(self.page):
                self.page, self.index = self.reader.next_page(), 0
                if not self.page:
                    self._finish()
                    return
            if self.pass_seq is not None and self.page[self.index].seq == self.pass_seq:
                self._pass_retry_expired(self.page[self.index])
                continue
            rows, chunk, lines = self._next_chunk()
            if rows is None:
                return       # a bad row stopped the partition
            if rows and not self._send(rows, chunk, lines):
                return

    def _next_chunk(self):
        """The next rows of the page to pass in one go: ``(rows, chunk, lines)``, where ``chunk``
        holds the events of ``rows`` to send (with their ``lines``) and the other rows are later
        copies of events, passed without sending, in the same request's batch. ``([], [], [])``
        after a bad row the policy let through; ``(None, None, None)`` when it stopped the partition.

        The usual case in one pass: the leading rows ready to send as they are (valid, with a
        wire line, within max_event_bytes) and copies. Otherwise the first row of the window is
        the other kind: a bad row, handled on its own, or an event without a wire line, encoded here.
        """
        limit = len(self.page) - self.index
        if self.run.throttle is not None:
            limit = min(limit, self.run.throttle.suggested_batch(self.part_id, self.sender.window))
        window = self.page[self.index:self.index + limit]
        taken, lines = wire.ready_lines(window, self.suffix, self.cfg.max_event_bytes)
        if taken == len(window) or (taken and window[taken].error is not None):
            rows = window[:taken]
            return rows, (rows if len(lines) == taken else [e for e in rows if e.duplicate_of is None]), lines
        rows, chunk, lines = [], [], []
        for event in window:
            if event.duplicate_of is not None:
                rows.append(event)
                continue
            problem, line = event.error, None
            if problem is None:
                line = encode_event(event, self.run.run_id, self.cfg.use_replay_sessions, self.suffix)
                if len(line) > self.cfg.max_event_bytes:
                    problem = "event is %d bytes, above max_event_bytes %d" % (len(line), self.cfg.max_event_bytes)
            if problem is None:
                rows.append(event)
                chunk.append(event)
                lines.append(line)
                continue
            if not rows:     # a bad row is first: it takes its own path
                return self._not_sent(event, problem)
            break            # pass the rows before it first
        return rows, chunk, lines

    def _not_sent(self, event, problem):
        """A bad row: the bad-row policy. Returns ``([], [], [])``, or ``(None, None, None)`` when
        the partition stopped."""
        self.flush()
        self.index += 1
        return ([], [], []) if self._bad_row(event, problem) else (None, None, None)

    def _send(self, rows, chunk, lines):
        """Send the events of ``rows`` (after the throttle's wait) and pass the copies among them;
        False when the partition stops or must return."""
        run = self.run
        if run.throttle is not None and chunk:
            wait = run.throttle.wait_for(self.part_id, len(chunk))
            if wait > 0:
                run.sleep_unless_stopped(min(wait, 0.5))
                return True
        started = time.time()
        result = self.sender.send(chunk, lines) if chunk else SendResult()
        done = rows_done(rows, result.acked, len(chunk))
        if done:
            last = rows[done - 1]
            copies = done - result.acked
            self.acked.position, self.acked.seq = last.position, last.seq
            self.acked.done += done
            self.acked.nbytes += result.acked_bytes
            last_ts = (chunk[result.acked - 1].event or {}).get("ts_ns") if result.acked else None
            run.progress.record_batch(self.part_id, result.acked, result.acked_bytes, last.position,
                                      last_ts, result.retries, result.duplicates, skipped=copies)
            self.batch.add(rows[:done], chunk, result, started)
            self.index += done
        if result.stop is not None or result.interrupted or \
                run.clock() - self.last_flush >= self.cfg.commit_interval_s:
            self.flush()
        if result.stop is not None:
            report = dict(result.stop)
            self._stop(report)
            run.audit.record(self.part_id, None, None, 0, 0, started, "stopped", report=report)
            return False
        return not result.interrupted

    def _stream_failed(self, message):
        """The sender's first failed request of this slice is a warning: a slice that ends short
        (the stream keeps failing until the time budget) must not look healthy."""
        if not self.stream_failure_warned:
            self.stream_failure_warned = True
            self.run.warn("partition %s: the append stream failed and is being resent with backoff (%s); the "
                          "partition stops after repeated failures. If this persists, check the cluster's ingest "
                          "path and config (partition_flow)" % (self.part_id, message))

    # ------------------------------------------------------------------ commits and records
    def flush(self):
        """Commit the cursor after the acked events of the batch, with its audit record. A
        crash before this resends the batch; the replay session drops what the cluster has."""
        batch = self.batch
        if batch.first is not None:
            self.run.commit(self.part_id, self.acked, "running")
            extra = {"duplicates_skipped": len(batch.copies), "copies": batch.copies} if batch.copies else {}
            self.run.audit.record(self.part_id, batch.first, batch.last, batch.events, batch.nbytes, batch.started,
                                  batch.outcome, duplicates=batch.duplicates, retries=batch.retries,
                                  requests=batch.requests, **extra)
            self.batch = Batch()
        self.last_flush = self.run.clock()

    def _finish(self):
        run = self.run
        self.flush()
        run.commit(self.part_id, self.acked, "done")
        run.progress.update(self.part_id, status="done")
        run.finished_this_slice = True
        if run.progress.parts[self.part_id].sent_this_run:
            run.summary.write("partition_done", part_id=self.part_id, events_done=self.acked.done,
                              bytes_done=self.acked.nbytes, position=position_json(self.acked.position))

    def _stop(self, report):
        """Stop the partition at ``report`` (a permanent refusal, a bad row): the cursor keeps the report."""
        run = self.run
        run.commit(self.part_id, self.acked, stopped_status(report))
        run.progress.update(self.part_id, status="stopped", report=report)
        run.finished_this_slice = True
        run.warn("partition %s stopped at event %s (position %s): %s %s"
                 % (self.part_id, report.get("event_id"), report.get("position"), report.get("reason"),
                    report.get("message")))
        run.summary.write("partition_stopped", **report)

    def _pass_retry_expired(self, event):
        """Pass the event the cluster refused PERMANENT_RETRY_EXPIRED, without sending it again."""
        run = self.run
        self.flush()
        self.index += 1
        self.pass_seq = None
        part = run.progress.parts[self.part_id]
        run.progress.update(self.part_id, retry_expired=part.retry_expired + 1, done=part.done + 1,
                            position=event.position)
        self.acked.passed(event)
        run.commit(self.part_id, self.acked, "running")
        run.audit.record(self.part_id, event, event, 0, 0, time.time(), "retry_expired",
                         event_id=(event.event or {}).get("event_id"))
        run.warn("partition %s: event at seq %d (refused PERMANENT_RETRY_EXPIRED) passed without resending it"
                 % (self.part_id, event.seq))

    def _bad_row(self, event, problem):
        """Apply the bad-row policy to ``event``; True to go on after it (dead_letter)."""
        run = self.run
        event_id = (event.event or {}).get("event_id") if isinstance(event.event, dict) else None
        if event_id is None and isinstance(event.raw_row, dict):
            event_id = event.raw_row.get("event_id")
        report = {"part_id": self.part_id, "event_id": event_id, "position": position_json(event.position),
                  "seq": event.seq, "status": "BadRow", "reason": "BAD_ROW", "message": problem}
        if self.cfg.on_bad_row == "stop":
            self._stop(report)
            return False
        row = event.raw_row or (event.event if isinstance(event.event, dict) else None)
        with run.dead_letter_lock:
            # durable (fsync) before the cursor moves past the row: at least once in the file
            dead_letter_write(self.cfg.dead_letter_path, self.part_id, event.position, problem, row, seq=event.seq)
        part = run.progress.parts[self.part_id]
        run.progress.update(self.part_id, dead_lettered=part.dead_lettered + 1, done=part.done + 1,
                            position=event.position)
        self.acked.passed(event)
        run.commit(self.part_id, self.acked, "running")
        run.audit.record(self.part_id, event, event, 1, 0, time.time(), "dead_letter", message=problem)
        run.warn("partition %s: bad row(s) written to the dead-letter file %s" % (self.part_id, self.cfg.dead_letter_path))
        return True
