# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): one partition's replay, page by page.

``PartitionReplay`` runs in a worker thread of ``run.ReplayRun``: it reads the partition's
pages (``reader.AdaptivePageReader``), sends the events in order (``sender.PartitionSender``),
commits the cursor after acked events (at most every ``commit_interval_s``) and writes one
batch audit record per commit. The rows it does not send take their own path: a later copy
of an event is skipped and counted, a bad row goes to the bad-row policy (stop the
partition, or the dead-letter file). :class:`Acked` is what the next cursor commit says.
"""

from __future__ import annotations

import time

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import stopped_status
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.reader import AdaptivePageReader
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import dead_letter_write, position_json
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sender import PartitionSender, encode_event


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
    """Acked events since the last cursor commit: one batch audit record when committed."""

    def __init__(self):
        self.events = 0
        self.first = self.last = None
        self.started = None
        self.nbytes = self.duplicates = self.retries = self.requests = 0
        self.outcome = "acked"

    def add(self, chunk, result, started):
        """Account a request's acked events (``result`` from PartitionSender.send)."""
        if not self.events:
            self.first, self.started = chunk[0], started
        self.events += result.acked
        self.last = chunk[result.acked - 1]
        self.nbytes += result.acked_bytes
        self.duplicates += result.duplicates
        self.retries += result.retries
        self.requests += result.requests
        if result.acked < len(chunk):
            self.outcome = "partial"


class PartitionReplay(object):
    """Replays one partition of ``run`` (a ``ReplayRun``) from its cursor, reading ``source``."""

    def __init__(self, run, part_id, source):
        self.run = run
        self.cfg = run.cfg
        self.part_id = part_id
        self.acked = Acked(run.store.load(run.run_id, part_id))
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
            self.flush()
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
            chunk, lines = self._next_chunk()
            if chunk is None:
                return       # a bad row stopped the partition
            if chunk and not self._send(chunk, lines):
                return

    def _next_chunk(self):
        """The next events to send with their lines; ``([], [])`` after a row that is not sent
        (a copy, a dead-lettered row); ``(None, None)`` when a bad row stopped the partition.

        The usual case in one pass: the leading events ready to send as they are (valid, with
        a wire line, within max_event_bytes). Otherwise the first event of the window is the
        other kind, handled on its own, and events without a wire line are encoded here.
        """
        limit = len(self.page) - self.index
        if self.run.throttle is not None:
            limit = min(limit, self.run.throttle.suggested_batch(self.part_id, self.sender.window))
        window = self.page[self.index:self.index + limit]
        lines = wire.ready_lines(window, self.suffix, self.cfg.max_event_bytes)
        if lines:
            return window[:len(lines)], lines
        chunk = []
        for event in window:
            problem = event.error if event.duplicate_of is None else None
            line = None
            if event.duplicate_of is None and problem is None:
                line = encode_event(event, self.run.run_id, self.cfg.use_replay_sessions, self.suffix)
                if len(line) > self.cfg.max_event_bytes:
                    problem = "event is %d bytes, above max_event_bytes %d" % (len(line), self.cfg.max_event_bytes)
            if line is not None and problem is None:
                chunk.append(event)
                lines.append(line)
                continue
            if not chunk:    # the other kind of row is first: it takes its own path
                return self._not_sent(event, problem)
            break            # send the rows before it first
        return chunk, lines

    def _not_sent(self, event, problem):
        """A row that is not sent: a later copy of an event (skipped, counted) or a bad row
        (the bad-row policy). Returns ``([], [])``, or ``(None, None)`` when the partition stopped."""
        self.flush()
        self.index += 1
        if event.duplicate_of is not None:
            self._skip_copy(event)
            return [], []
        return ([], []) if self._bad_row(event, problem) else (None, None)

    def _send(self, chunk, lines):
        """Send one chunk (after the throttle's wait); False when the partition stops or must return."""
        run = self.run
        if run.throttle is not None:
            wait = run.throttle.wait_for(self.part_id, len(chunk))
            if wait > 0:
                run.sleep_unless_stopped(min(wait, 0.5))
                return True
        started = time.time()
        result = self.sender.send(chunk, lines)
        if result.acked:
            last = chunk[result.acked - 1]
            self.acked.position, self.acked.seq = last.position, last.seq
            self.acked.done += result.acked
            self.acked.nbytes += result.acked_bytes
            run.progress.record_batch(self.part_id, result.acked, result.acked_bytes, last.position,
                                      (last.event or {}).get("ts_ns"), result.retries, result.duplicates)
            self.batch.add(chunk, result, started)
            self.index += result.acked
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
        if batch.events:
            self.run.commit(self.part_id, self.acked, "running")
            self.run.audit.record(self.part_id, batch.first, batch.last, batch.events, batch.nbytes, batch.started,
                                  batch.outcome, duplicates=batch.duplicates, retries=batch.retries,
                                  requests=batch.requests)
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

    def _skip_copy(self, event):
        """A later copy of an event (same event_id) in the history: the cursor moves past it,
        it is counted (``duplicates_skipped``, committed with the cursor) and audited."""
        run = self.run
        part = run.progress.parts[self.part_id]
        run.progress.update(self.part_id, duplicates_skipped=part.duplicates_skipped + 1, done=part.done + 1,
                            position=event.position)
        self.acked.passed(event)
        run.commit(self.part_id, self.acked, "running")
        event_id = event.raw_row.get("event_id") if isinstance(event.raw_row, dict) else None
        run.audit.record(self.part_id, event, event, 0, 0, time.time(), "duplicate_skipped", event_id=event_id,
                         duplicate_of=position_json(event.duplicate_of))

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
            dead_letter_write(self.cfg.dead_letter_path, self.part_id, event.position, problem, row)
        part = run.progress.parts[self.part_id]
        run.progress.update(self.part_id, dead_lettered=part.dead_lettered + 1, done=part.done + 1,
                            position=event.position)
        self.acked.passed(event)
        run.commit(self.part_id, self.acked, "running")
        run.audit.record(self.part_id, event, event, 1, 0, time.time(), "dead_letter", message=problem)
        run.warn("partition %s: bad row(s) written to the dead-letter file %s" % (self.part_id, self.cfg.dead_letter_path))
        return True
