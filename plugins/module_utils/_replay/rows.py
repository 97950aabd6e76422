# Internal to ceptra.backfill (not a public API): historic rows as events, the record the replay engine sends.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rows of a historic table as :class:`HistoricEvent` records, for every source backend.

``EventRows`` (mixed into the backends of ``source_sql``) turns each row into the append
message to send, or into an error event that says what is wrong with the row (the bad-row
policy decides what happens to it). ``dead_letter_write`` sets a bad row aside.
"""

from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError

REPLAY_FLAG = enc.REPLAY_FLAG


class SourceError(ReplayError):
    """A problem with the source as a whole (configuration, connection, data layout); the
    message says what to fix. (A problem with one row is an error event, not an exception.)"""


class HistoricEvent(NamedTuple):
    """One row of the historic stream, ready to send (``event`` set) or not (``error`` set).

    - ``position``: the row's ordering key followed by its rank among the rows sharing that
      key (1, 2...; 1 for a unique key): unique for every row; pass the last one back as
      ``after`` to read on;
    - ``seq``: its ``replay_seq`` (1, 2, 3... per partition, in order);
    - ``event``: the append message as a dict (``read``) or a summary of it without payload
      and flags (``read_wire``); None for a row that cannot be sent;
    - ``raw_size``: bytes of the message as sent (of the row as read, for a bad row);
    - ``error``: what is wrong with the row, None when it can be sent;
    - ``raw_row``: the row's columns, for the dead-letter file (rows that cannot be sent);
    - ``duplicate_of``: on a later copy of an event already in the stream (same
      event_time_ns and event_id), the ordering key of an earlier copy; ``error`` is set too,
      and the run skips the row (the event was sent) and counts it;
    - ``wire``: the append message as sent, without its closing brace (see ``wire.py``): the
      payload is the database's JSON text, validated, not re-serialized. Set on every event
      with ``event`` set; build a changed event with ``_replace(event=..., wire=None)``.
    """
    part_id: str
    position: tuple
    seq: int
    event: dict | None
    raw_size: int
    error: str | None
    raw_row: dict | None = None
    duplicate_of: tuple | None = None
    wire: bytes | None = None


_new_event = tuple.__new__   # HistoricEvent without the keyword-argument layer (hot path)
_fast_loads = enc.fast_loads
_quote = enc.quote
_WIRE_FORMAT = enc.WIRE_FORMAT
_REPLAY_FLAGS_JSON = enc.REPLAY_FLAGS_JSON


def _json_safe(value):
    """Position values must survive a JSON round trip through the cursor store."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class EventRows(object):
    """Row -> event conversion and bad-row checks, mixed into every source backend.

    Uses the backend's ``SELECT_COLUMNS`` row layout, ``_position_values``, ``tiebreak``,
    ``order_by`` and ``max_event_bytes``.
    """

    def _position_of(self, row):
        values = self._position_values(row)
        for value in values:
            if value.__class__ is not int and value.__class__ is not str:  # rare: convert for JSON
                return tuple(_json_safe(v) for v in values)
        return values

    def _raw_row(self, part_id, row):
        names = list(self.SELECT_COLUMNS) + (["tiebreak"] if self.tiebreak is not None else [])
        raw = {"part_id": part_id}
        for name, value in zip(names, row):
            if isinstance(value, (dict, list)):
                raw[name] = value
            else:
                raw[name] = _json_safe(value)
        return raw

    def _duplicate(self, event, row, original):
        """A second copy: of the event at ``original``, or (None) a repeated ordering key."""
        if original is not None:
            error = ("duplicate row: the same event (event_time_ns, event_id) as an earlier row with ordering key %s"
                     % (list(original),))
        else:
            error = ("duplicate ordering key: same part_id and %s as the previous row; make the key unique "
                     "or map columns.tiebreak" % ("raft_index" if self.order_by == "raft_index" else "(event_time_ns, event_id)"))
        # event._replace(event=None, error=error, duplicate_of=original, raw_row=...), without its keyword layer
        return _new_event(HistoricEvent, (event.part_id, event.position, event.seq, None, event.raw_size, error,
                                          event.raw_row or self._raw_row(event.part_id, row), original, event.wire))

    def _make_event_fast(self, part_id, part_json, row, position, seq, summary=False):
        """``_make_event`` for the common row: text columns, integer time, no flags, payload text.

        The payload is validated (one C-level parse) and embedded as the database's text in the
        ``wire`` line; the event dict shares the parsed payload. Any other row (NULLs, other
        column types, flags, a payload that does not parse, an oversized event) takes the
        general path, which says what is wrong with it. (Inlined: this runs once per event.)
        """
        ts_ns, event_id, partition_key, schema_key, payload, flags = row[:6]
        if (flags is None and ts_ns.__class__ is int and event_id.__class__ is str and partition_key.__class__ is str
                and schema_key.__class__ is str and payload.__class__ is str and schema_key and event_id
                and not event_id.isspace() and "\n" not in payload and "\r" not in payload):
            try:
                value = _fast_loads(payload)
            except (ValueError, RecursionError):
                value = None
            if value.__class__ is dict:
                wire = (_WIRE_FORMAT % (_quote(event_id), part_json, _quote(partition_key), ts_ns, _quote(schema_key),
                                        payload, _REPLAY_FLAGS_JSON)).encode("utf-8")
                size = len(wire) + 1
                if size <= self.max_event_bytes:
                    if summary:
                        event = {"event_id": event_id, "part_id": part_id, "partition_key": partition_key,
                                 "ts_ns": ts_ns, "schema_key": schema_key}
                    else:
                        event = {"event_id": event_id, "part_id": part_id, "partition_key": partition_key,
                                 "ts_ns": ts_ns, "schema_key": schema_key, "payload": value, "flags": [REPLAY_FLAG]}
                    return _new_event(HistoricEvent, (part_id, position, seq, event, size, None,
                                                      None, None, wire))
        event = self._make_event(part_id, row, position, seq)
        if summary and event.event is not None:
            event = event._replace(event=_summary(event.event))
        return event

    def _make_event(self, part_id, row, position, seq):
        """Turn one row into an append message, or into an error event saying what is wrong."""
        ts_ns, event_id, partition_key, schema_key, payload, flags, _raft_index = row[:7]
        error = None
        if event_id is None or (isinstance(event_id, str) and not event_id.strip()):
            error = "missing event_id" if event_id is None else "empty event_id"
        elif ts_ns is None:
            error = "event_time_ns is NULL"
        elif partition_key is None:
            error = "partition_key is NULL"
        elif schema_key is None or schema_key == "":
            error = "schema_key is NULL or empty"
        if error is None and not isinstance(ts_ns, int):
            try:
                ts_ns = int(ts_ns)
            except (TypeError, ValueError):
                error = "event_time_ns is not an integer: %r" % (ts_ns,)
        if error is None:
            payload, error = _parse_payload(payload)
        if error is None:
            flags, error = _parse_flags(flags)
        if error is not None:
            raw_size = sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row if v is not None)
            return HistoricEvent(part_id, position, seq, None, raw_size, error, self._raw_row(part_id, row))
        if REPLAY_FLAG not in flags:
            flags.append(REPLAY_FLAG)
        event = {"event_id": str(event_id), "part_id": part_id, "partition_key": str(partition_key),
                 "ts_ns": ts_ns, "schema_key": str(schema_key), "payload": payload, "flags": flags}
        wire = enc.wire_from_event(event)
        size = len(wire) + 1
        if size > self.max_event_bytes:
            return HistoricEvent(part_id, position, seq, None, size,
                                 "event is %d bytes serialized, above max_event_bytes %d"
                                 % (size, self.max_event_bytes), self._raw_row(part_id, row))
        return HistoricEvent(part_id, position, seq, event, size, None, wire=wire)


def _summary(event):
    """The summary form of an append message (``read_wire``): identity and time, no payload."""
    return {key: event[key] for key in ("event_id", "part_id", "partition_key", "ts_ns", "schema_key")}


def _before(position, other):
    """Raft order: is ``position`` earlier than ``other``? (raft_index first, then the tiebreak)."""
    if position[0] != other[0]:
        return position[0] < other[0]
    return position[1:] < other[1:]


def _parse_payload(payload):
    if isinstance(payload, dict):
        return payload, None
    if isinstance(payload, memoryview):
        payload = bytes(payload)
    if isinstance(payload, (str, bytes, bytearray)):
        try:
            value = enc.loads(payload)
        except (ValueError, RecursionError) as exc:   # RecursionError: nesting too deep for the stdlib parser
            return None, "payload is not valid JSON (%s)" % (str(exc).splitlines()[0],)
        if isinstance(value, dict):
            return value, None
        return None, "payload must be a JSON object, got %s" % _json_type(value)
    if payload is None:
        return None, "payload is NULL"
    return None, "payload must be a JSON object, got %s" % _json_type(payload)


def _parse_flags(flags):
    if flags is None:
        return [], None
    if isinstance(flags, memoryview):
        flags = bytes(flags)
    if isinstance(flags, (str, bytes, bytearray)):
        if not flags.strip():
            return [], None
        try:
            flags = enc.loads(flags)
        except ValueError:
            return None, "flags is not a JSON array of strings: %r" % (flags[:80],)
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        return None, "flags must be a JSON array of strings, got %s" % _json_type(flags)
    return list(flags), None


_json_type = enc.json_type


def dead_letter_write(path, part_id, position, error, raw_row, seq=None):
    """Append one malformed row to the dead-letter file (JSON Lines), durably (fsync).

    One line per row: ``{"time", "time_ns", "part_id", "position", "seq", "error", "row"}``
    (``seq``: the row's replay_seq, its rank in the partition's order). The file is only
    ever appended to, so it can be inspected and re-fed after the run.
    """
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "time_ns": time.time_ns(),
              "part_id": str(part_id), "position": list(position) if position is not None else None,
              "seq": seq, "error": error, "row": raw_row}
    line = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SourceError("dead-letter file %s: directory %s does not exist" % (path, directory))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def position_json(position):
    """A source position as JSON (a tuple becomes a list; None stays None)."""
    if position is None:
        return None
    return list(position) if isinstance(position, (list, tuple)) else position
