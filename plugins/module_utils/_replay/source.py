# Internal to ceptra.backfill (not a public API): historic event sources of the replay engine.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Historic sources: read archived events partition by partition, in a strict order, in pages.

This module is the seam the rest of the collection imports: ``open_source``, ``HistoricEvent``,
``SourceError`` and ``dead_letter_write``. It checks the source spec, turns rows into events
(or into error events saying what is wrong with a row) and writes the dead-letter file. The
SQL side (query builder, keyset paging, the SQLite and PostgreSQL backends) lives in
``source_sql``; identifier checks and quoting in ``sql``.
``docs/historic-source.md`` is the user guide.
"""

from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc
from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sql import is_identifier

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the environment
    psycopg = None

PSYCOPG_MISSING = (
    "the PostgreSQL historic source needs the Python package psycopg 3 on the host that runs "
    "the replay: pip install 'psycopg[binary]'"
)
DEFAULT_TABLE = "ceptra_history"
DEFAULT_MAX_EVENT_BYTES = 1048576
LOGICAL_COLUMNS = ("part_id", "raft_index", "event_time_ns", "event_id", "partition_key",
                   "schema_key", "payload", "flags", "tiebreak")
# Columns that may be mapped to null ("this table has no such column").
OPTIONAL_COLUMNS = ("raft_index", "flags", "tiebreak")
ORDERINGS = ("raft_index", "event_time")
REPLAY_FLAG = "REPLAY"


class SourceError(ReplayError):
    """A problem with the source as a whole (configuration, connection, data layout).

    The message says what to fix; modules turn it into ``fail_json(msg=...)``.
    """


class HistoricEvent(NamedTuple):
    """One row of the historic stream, ready to send (``event``) or malformed (``error``).

    ``position`` is the row's ordering key (pass the last one back as ``after``); ``seq`` is
    the ``replay_seq`` (1, 2, 3.. per partition in order). ``raw_row`` (an addition to the
    seam, default None) carries the row's columns for a malformed row, for the dead-letter file.
    ``duplicate_of`` (also an addition) is set on a second copy of an event already in the
    stream (same event_time_ns and event_id): the position of an earlier copy. Such a row
    also has ``error`` set, so a caller unaware of the field applies its bad-row policy; a
    caller that knows it skips the row (the event was sent) and counts it.
    ``wire`` (also an addition) is the append message as sent, without its closing brace
    (``wire``): the payload is the database's JSON text, validated but not
    re-serialized. It is set on every event with ``event`` set; ``event`` is the same
    message as a dict (``read``) or a summary of it without payload and flags (``read_wire``).
    Build a changed event with ``_replace(event=..., wire=None)``.
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


def validate_identifier(name, what, allow_schema=False):
    """Return ``name`` when it is a plain SQL identifier (or ``schema.table``); else raise SourceError."""
    if not is_identifier(name, allow_schema):
        shape = " (optionally schema.table)" if allow_schema else ""
        raise SourceError(
            "historic source: %s %r is not a valid SQL identifier: use letters, digits and "
            "underscores, not starting with a digit%s" % (what, name, shape))
    return name


def _json_safe(value):
    """Position values must survive a JSON round trip through the cursor store."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _normalize_spec(spec):
    """Check the source spec and fill defaults; every problem is a SourceError naming the key."""
    if not isinstance(spec, dict):
        raise SourceError("historic source: the source spec must be a mapping, got %s" % type(spec).__name__)
    kind = spec.get("type", "sqlite")
    if kind == "postgres":
        kind = "postgresql"
    if kind not in ("sqlite", "postgresql"):
        raise SourceError("historic source: type must be 'sqlite' or 'postgresql', got %r" % (kind,))
    out = dict(spec, type=kind)
    if kind == "sqlite" and not spec.get("path"):
        raise SourceError("historic source: type sqlite needs 'path' (the SQLite file)")
    if kind == "postgresql" and not spec.get("dsn"):
        raise SourceError("historic source: type postgresql needs 'dsn' (e.g. 'host=db dbname=history user=replay')")
    out["table"] = validate_identifier(spec.get("table") or DEFAULT_TABLE, "table", allow_schema=True)
    mapping = spec.get("columns") or {}
    if not isinstance(mapping, dict):
        raise SourceError("historic source: columns must be a mapping of logical name -> column name")
    unknown = sorted(set(mapping) - set(LOGICAL_COLUMNS))
    if unknown:
        raise SourceError("historic source: unknown logical column(s) %s in columns; known: %s"
                          % (", ".join(map(str, unknown)), ", ".join(LOGICAL_COLUMNS)))
    columns = {name: name for name in LOGICAL_COLUMNS if name != "tiebreak"}
    columns["tiebreak"] = None
    for logical, physical in mapping.items():
        if physical is None:
            if logical not in OPTIONAL_COLUMNS:
                raise SourceError("historic source: column %r is required and cannot be mapped to null" % logical)
            columns[logical] = None
        else:
            columns[logical] = validate_identifier(physical, "column for %s" % logical)
    out["columns"] = columns
    order_by = spec.get("order_by") or "event_time"
    if order_by not in ORDERINGS:
        raise SourceError("historic source: order_by must be 'raft_index' or 'event_time', got %r" % (order_by,))
    if order_by == "raft_index" and columns["raft_index"] is None:
        raise SourceError("historic source: order_by raft_index needs a raft_index column (it is mapped to null)")
    out["order_by"] = order_by
    window = spec.get("window") or {}
    if not isinstance(window, dict):
        raise SourceError("historic source: window must be a mapping {start_ns, end_ns}")
    bounds = {}
    for key in ("start_ns", "end_ns"):
        value = window.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise SourceError("historic source: window.%s must be an integer (ns since the epoch), got %r"
                                      % (key, value))
            bounds[key] = value
    if "start_ns" in bounds and "end_ns" in bounds and bounds["start_ns"] >= bounds["end_ns"]:
        raise SourceError("historic source: window.start_ns must be below window.end_ns (start inclusive, end exclusive)")
    out["window"] = bounds
    part_ids = spec.get("part_ids")
    if part_ids is not None:
        if isinstance(part_ids, (str, bytes)) or not hasattr(part_ids, "__iter__"):
            raise SourceError("historic source: part_ids must be a list of partition ids")
        part_ids = sort_ids(part_ids)
    out["part_ids"] = part_ids
    max_bytes = spec.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES) or DEFAULT_MAX_EVENT_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise SourceError("historic source: max_event_bytes must be an integer of at least 1024, got %r" % (max_bytes,))
    out["max_event_bytes"] = max_bytes
    find_copies = spec.get("find_copies", True)
    if not isinstance(find_copies, bool):
        raise SourceError("historic source: find_copies must be true or false, got %r" % (find_copies,))
    out["find_copies"] = find_copies
    return out


def open_source(spec):
    """Open the historic source described by ``spec`` (see the module docstring and docs)."""
    spec = _normalize_spec(spec)
    # Imported here: the backends build on this module (EventRows, SourceError).
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import source_sql as backends
    if spec["type"] == "sqlite":
        return backends.SqliteSource(spec)
    if psycopg is None:
        raise SourceError(PSYCOPG_MISSING)
    return backends.PostgresSource(spec)


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
            error = ("duplicate row: the same event (event_time_ns, event_id) as the row at position %s"
                     % (list(original),))
        else:
            error = ("duplicate ordering key: same part_id and %s as the previous row; make the key unique "
                     "or map columns.tiebreak" % ("raft_index" if self.order_by == "raft_index" else "(event_time_ns, event_id)"))
        return event._replace(event=None, error=error, duplicate_of=original,
                              raw_row=event.raw_row or self._raw_row(event.part_id, row))

    def _make_event_fast(self, part_id, part_json, row, seq, summary=False):
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
                    return _new_event(HistoricEvent, (part_id, self._position_of(row), seq, event, size, None,
                                                      None, None, wire))
        event = self._make_event(part_id, row, seq)
        if summary and event.event is not None:
            event = event._replace(event=_summary(event.event))
        return event

    def _make_event(self, part_id, row, seq):
        """Turn one row into an append message, or into an error event saying what is wrong."""
        ts_ns, event_id, partition_key, schema_key, payload, flags, _raft_index = row[:7]
        position = self._position_of(row)
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


def dead_letter_write(path, part_id, position, error, raw_row):
    """Append one malformed row to the dead-letter file (JSON Lines), durably (fsync).

    One line per row: ``{"time", "time_ns", "part_id", "position", "error", "row"}``. The
    file is only ever appended to, so it can be inspected and re-fed after the run.
    """
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "time_ns": time.time_ns(),
              "part_id": str(part_id), "position": list(position) if position is not None else None,
              "error": error, "row": raw_row}
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
