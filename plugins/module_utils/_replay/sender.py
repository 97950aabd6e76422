# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay sender.

Sends one partition's historic events, in order, over the NDJSON append stream
(``POST /v1/partitions/<part_id>/append-stream``) and turns the per-event responses into
"acked up to here", a retry, a leader re-resolution, a durability pause, or a stop report.
"""

from __future__ import annotations

import random
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as encode_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import DEFAULTS, ReplayError

DEFAULT_BACKOFF_MS = 50          # contract: 25-50 ms when the cluster gives no hint
TRANSPORT_RETRY_LIMIT = 8        # consecutive failed requests before the partition gives up
NOT_LEADER_RETRY_LIMIT = 20
# The permanent refusal of an event_id acknowledged before the retry window: fatal, never resent.
RETRY_EXPIRED = "PERMANENT_RETRY_EXPIRED"
# Answers to a whole request that no retry fixes (identity, rights, route, content type): the run stops.
FATAL_STATUSES = (400, 401, 403, 404, 405, 415)


class SenderFatal(ReplayError):
    """An error that stops the whole run (authentication, authorisation, bad route)."""


class StopReport(dict):
    """Why a partition stopped: event_id, position, part_id, seq, status, reason, message."""


class SendResult(object):
    """Outcome of ``PartitionSender.send``: the first ``acked`` events are committed."""

    def __init__(self):
        self.acked = 0
        self.acked_bytes = 0
        self.duplicates = 0
        self.retries = 0
        self.requests = 0
        self.stop = None          # StopReport when the partition must stop
        self.interrupted = False  # True when a stop was requested while waiting

    def as_dict(self):
        return {"acked": self.acked, "acked_bytes": self.acked_bytes, "duplicates": self.duplicates,
                "retries": self.retries, "requests": self.requests, "stop": self.stop}


def encode_event(hevent, run_id, use_sessions, suffix=None):
    """The wire line (bytes) for a HistoricEvent: REPLAY flag and, with sessions,
    ``replay_session`` = "<run_id>/<part_id>" and ``replay_seq`` = the event's seq.

    An event from a historic source carries ``wire`` (the message without its closing
    brace, payload as the database's text): the line is that plus the session fields.
    ``suffix`` (optional) is ``wire.session_suffix(run_id, part_id, use_sessions)``,
    computed once per partition by callers that encode many events.
    """
    wire = hevent.wire
    if wire is None:
        # An event built in memory (no wire line): the general, slower path.
        msg = dict(hevent.event)
        msg.setdefault("part_id", hevent.part_id)
        wire = encode_mod.wire_from_event(msg)
    if suffix is None:
        suffix = encode_mod.session_suffix(run_id, hevent.part_id, use_sessions)
    return encode_mod.line_for(wire, suffix, hevent.seq)


def is_healthy(resp):
    """True for a Healthy append answer (``duplicate: true`` included)."""
    return isinstance(resp, dict) and resp.get("status") == "Healthy"


def _is_permanent(resp):
    """True for a refusal that stops the partition (not transient, NOT_LEADER or the fence)."""
    if not isinstance(resp, dict):
        return False
    status = resp.get("status")
    reason = str(resp.get("cep_status_reason") or "")
    if status != "PermanentDurability":
        return False
    return not (reason.startswith("NOT_LEADER") or reason in ("PERMANENT_DURABILITY", ""))


class PartitionSender(object):
    """Ordered sender for one partition.

    ``send(events)`` returns once every event is acked, or the partition must stop
    (permanent status / durability pause that did not clear), or ``should_stop()`` turns
    true while it waits. Acked means: every event up to ``result.acked`` answered
    Healthy (``duplicate: true`` included). Events after the first non-Healthy answer are
    never counted as acked, even when the cluster answered them Healthy: they are resent
    in order and replay_seq (or event_id) dedup makes the resend harmless.
    """

    def __init__(self, client, part_id, run_id, *, use_sessions=True, max_window=DEFAULTS.max_window,
                 resolve_leader=None, wait_durability=None, should_stop=None,
                 sleep=time.sleep, rng=None, route="append_stream", on_failure=None):
        self.client = client
        self.part_id = str(part_id)
        self.run_id = run_id
        self.use_sessions = use_sessions
        self.max_window = max(1, int(max_window))
        self.window = self.max_window
        self.resolve_leader = resolve_leader
        self.wait_durability = wait_durability
        self.should_stop = should_stop or (lambda: False)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.route = route
        self.backoff_ms = DEFAULT_BACKOFF_MS
        # counters over the sender's life (progress / metrics)
        self.transient_total = 0
        self.not_leader_total = 0
        self.durability_pauses = 0
        self.out_of_order_commits = 0
        self.gap_resends = 0
        self._committed_ahead = set()
        self._gap_fixed = set()
        self._later_permanent = None   # (index, response) of a permanent refusal behind a retryable one
        self._transport_failures = 0   # failed requests in a row (this send)
        self.on_failure = on_failure   # called with what went wrong, for every failed request
        self.failed_requests = 0       # requests that failed or were cut short, over the sender's life
        self._not_leader = 0           # NOT_LEADER answers in a row (this send)

    # ------------------------------------------------------------------ helpers
    def _follow_hint(self, resp, shrink=False):
        hint = resp.get("cep_credit_hint") if isinstance(resp, dict) else None
        if not isinstance(hint, dict):
            return
        size = hint.get("client_window_size")
        if isinstance(size, int) and size > 0:
            self.window = max(1, min(self.max_window, size))
        elif shrink:
            self.window = max(1, self.window // 2)
        backoff = hint.get("retry_backoff_ms")
        if isinstance(backoff, (int, float)) and backoff > 0:
            self.backoff_ms = backoff

    def _failed(self, message):
        self.failed_requests += 1
        if self.on_failure is not None:
            self.on_failure(message)

    def _backoff_wait(self):
        """Uniformly random wait in [backoff/2, backoff] (contract section 4)."""
        ms = self.rng.uniform(self.backoff_ms / 2.0, self.backoff_ms)
        self.sleep(ms / 1000.0)

    def _report(self, hevent, status, reason, message):
        return StopReport(part_id=self.part_id, event_id=(hevent.event or {}).get("event_id"),
                          position=list(hevent.position) if hevent.position is not None else None,
                          seq=hevent.seq, status=status, reason=reason, message=message)

    # ------------------------------------------------------------------ main entry
    def send(self, events, lines=None):
        """Send ``events`` (HistoricEvent, all valid) in order; see class docstring.

        ``lines`` may carry the pre-encoded wire lines (one per event).
        """
        result = SendResult()
        if lines is None:
            suffix = encode_mod.session_suffix(self.run_id, self.part_id, self.use_sessions)
            lines = [encode_event(ev, self.run_id, self.use_sessions, suffix) for ev in events]
        else:
            lines = list(lines)   # gap resends may replace lines; keep the caller's list intact
        self._committed_ahead = set()
        self._gap_fixed = set()
        self._transport_failures = 0
        self._not_leader = 0
        start = 0
        while start < len(events):
            if self.should_stop():
                result.interrupted = True
                return result
            end = min(len(events), start + self.window)
            result.requests += 1
            responses = self._post(events, lines, start, end, result)
            if result.stop is not None:
                return result
            if responses is None:
                continue
            self._later_permanent = None
            advanced, action, resp = self._scan(events, lines, start, end, responses, result)
            start += advanced
            if not self._follow_up(action, resp, events, lines, start, result):
                return result
        return result

    def _post(self, events, lines, start, end, result):
        """One request for ``events[start:end]``: ``wire.HealthyAnswers`` when every event was
        answered Healthy, else the answers (one per event sent), or None when the request
        failed and is to be sent again (``result.stop`` is set when the partition gives up)."""
        params = {"part_id": self.part_id}
        try:
            # the shared client's exchange; the answers checked as a whole, or parsed line by line in C
            response = encode_mod.post_raw(self.client, self.route, lines[start:end], params=params)
            responses = encode_mod.healthy_answers(response.raw, end - start)
            if responses is None:
                responses = encode_mod.parse_answers(self.client, self.route, params, response)
        except CeptraError as exc:   # from the shared client, after its own retries
            if exc.status in FATAL_STATUSES:
                raise SenderFatal("append stream for partition %s refused: %s" % (self.part_id, exc.message))
            if exc.status == 413:
                self.window = max(1, (end - start) // 2)    # the request as a whole is too large
                if end - start > 1:
                    return None
            self._transport_failures += 1
            self._failed(exc.message)
            result.retries += 1
            if self._transport_failures > TRANSPORT_RETRY_LIMIT:
                result.stop = self._report(events[start], "TransportError", "TRANSPORT",
                                           "append stream failed %d times in a row: %s"
                                           % (self._transport_failures, exc.message))
            else:
                self._backoff_wait()
            return None
        self._transport_failures = 0
        return responses

    def _follow_up(self, action, resp, events, lines, start, result):
        """Act on how a request ended; False when the partition stops (``result.stop`` set)."""
        if action != "permanent" and self._later_permanent is not None:
            # A retryable answer came first, but a later event of the request was refused
            # permanently: stop here. Resending would send events after a permanent refusal.
            index, refusal = self._later_permanent
            result.stop = self._stop_report(events, index, refusal)
            return False
        if self._committed_ahead and self.use_sessions and action in ("transient", "not_leader", "durability"):
            self._fix_gaps(events, lines, start)
        if action == "ok":
            self._not_leader = 0
            return True
        if action == "transient":
            self.transient_total += 1
            result.retries += 1
            self._backoff_wait()
            return True
        if action == "not_leader":
            return self._on_not_leader(events[start], resp, result)
        if action == "durability":
            return self._on_fence(events[start], result)
        # permanent: stop this partition, nothing after the event is sent (ever: no resend)
        result.stop = self._stop_report(events, start, resp)
        return False

    def _on_not_leader(self, event, resp, result):
        """NOT_LEADER: find the new leader (or back off) and send again, up to NOT_LEADER_RETRY_LIMIT times in a row."""
        self.not_leader_total += 1
        self._not_leader += 1
        result.retries += 1
        if self._not_leader > NOT_LEADER_RETRY_LIMIT:
            result.stop = self._report(event, "PermanentDurability", resp.get("cep_status_reason"),
                                       "leader kept moving: %d NOT_LEADER answers in a row" % self._not_leader)
            return False
        if self.resolve_leader is not None:
            self.resolve_leader(self.part_id, resp.get("cep_status_reason"))
        else:
            self._backoff_wait()
        return True

    def _on_fence(self, event, result):
        """The durability fence: wait for readiness to clear it; stop the partition when it does not."""
        self.durability_pauses += 1
        result.retries += 1
        if self.wait_durability is not None and self.wait_durability(self.part_id):
            return True
        if self.should_stop():
            result.interrupted = True
            return False
        result.stop = self._report(event, "PermanentDurability", "PERMANENT_DURABILITY",
                                   "partition refused appends (durability fence) and readiness "
                                   "did not clear in time; rerun to resume from the cursor")
        return False

    def _stop_report(self, events, index, resp):
        """The stop report for a permanent refusal of ``events[index]``."""
        reason = resp.get("cep_status_reason") or "PERMANENT"
        message = resp.get("error") or resp.get("message") or "the cluster refused the event permanently"
        if reason == RETRY_EXPIRED:
            message = ("%s. The cluster acknowledged this event_id more than client_retry_window_s ago and does "
                       "not apply it again; a client must not retry it (contract section 4): rerun with "
                       "retry_stopped to pass it without sending" % message.rstrip("."))
        report = self._report(events[index], resp.get("status"), reason, message)
        ahead = sorted(i for i in self._committed_ahead if i > index)
        if ahead:
            # A cluster that does not stop a session at a refusal went on committing events
            # after the refused one in the same request; say so instead of pretending they
            # were not applied. The lab answers them TRANSIENT_RETRY instead (docs/lab.md).
            report["committed_after"] = [(events[i].event or {}).get("event_id") for i in ahead]
        return report

    def _fix_gaps(self, events, lines, start):
        """Some events after a refused one were committed (the cluster did not stop the
        session at the refusal). Their replay_seq is now the session's high-water mark, so
        resending the refused events with the session would be answered "duplicate" and
        lose them: resend those (only) without the session, deduplicated by event_id."""
        highest = max(self._committed_ahead)
        for index in range(start, highest):
            if index not in self._committed_ahead and index not in self._gap_fixed:
                lines[index] = encode_event(events[index], self.run_id, False)
                self._gap_fixed.add(index)
                self.gap_resends += 1

    def _scan(self, events, lines, start, end, responses, result):
        """Account a request's answers. Returns (events acked from ``start``, action, response)."""
        if responses.__class__ is encode_mod.HealthyAnswers:
            # the usual request: every event acked, checked once for the whole request
            count = end - start
            self._credit(result, count, sum(map(len, lines[start:end])), responses.duplicates, responses.last)
            return count, "ok", None
        return self._walk_answers(events, lines, start, end, responses, result)

    def _walk_answers(self, events, lines, start, end, responses, result):
        """Walk responses in order, one per event. Returns (events acked from ``start``, action, response)."""
        count = end - start
        acked = 0
        acked_bytes = 0
        duplicates = 0
        last_healthy = None
        action, failing = "ok", None
        # The hot loop of the worker: keep it to dict lookups, and follow the credit hint
        # of the last Healthy answer only (it is the cluster's latest).
        for i in range(min(count, len(responses))):
            resp = responses[i]
            if isinstance(resp, dict) and resp.get("status") == "Healthy":
                acked += 1
                acked_bytes += len(lines[start + i])
                if resp.get("duplicate"):
                    duplicates += 1
                last_healthy = resp
                continue
            failing = resp if isinstance(resp, dict) else {"status": "Unknown"}
            status = failing.get("status")
            reason = str(failing.get("cep_status_reason") or "")
            if status == "TransientBackpressure":
                self._follow_hint(failing, shrink=True)
                action = "transient"
            elif status == "PermanentDurability" and reason.startswith("NOT_LEADER"):
                action = "not_leader"
            elif status == "PermanentDurability" and reason in ("PERMANENT_DURABILITY", ""):
                action = "durability"
            else:
                action = "permanent"
            # Later Healthy answers are NOT acks (they are resent); count them so a cluster
            # that commits past a refused event is visible in the report.
            # A later permanent refusal (other than NOT_LEADER / the durability fence) is
            # remembered: the partition stops at it even when the first failure is retryable.
            for j in range(i + 1, min(count, len(responses))):
                later = responses[j]
                if is_healthy(later):
                    if not later.get("duplicate"):
                        self.out_of_order_commits += 1
                        self._committed_ahead.add(start + j)
                elif action != "permanent" and self._later_permanent is None and _is_permanent(later):
                    self._later_permanent = (start + j, later)
            break
        else:
            if len(responses) < count:
                # a short response (connection closed mid-stream): resend the rest
                action = "transient"
                failing = {}
                self._failed("the append stream answered %d of %d events, then ended" % (len(responses), count))
        self._credit(result, acked, acked_bytes, duplicates, last_healthy if action != "transient" else None)
        return acked, action, failing

    def _credit(self, result, acked, acked_bytes, duplicates, last_healthy):
        """Count a request's acked events into ``result`` and follow the credit hint of its last
        Healthy answer (None: none to follow)."""
        result.acked += acked
        result.acked_bytes += acked_bytes
        result.duplicates += duplicates
        if last_healthy is not None:
            self._follow_hint(last_healthy)
