# Internal to ceptra.backfill (not a public API): the way in to the historic sources of the replay engine.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Historic sources: archived events read partition by partition, in a strict order, in pages.

``open_source(spec)`` checks the source spec (every problem is a SourceError naming the
key) and opens the backend: ``source_sql.SqliteSource`` or ``source_sql.PostgresSource``.
A source has ``partitions()``, ``plan(part_id, after)``, ``read(part_id, after,
after_seq, limit)``, ``read_wire(...)`` (the same rows, cheaper for sending) and ``close()``;
the events are ``rows.HistoricEvent``. ``docs/historic-source.md`` is the user guide.
"""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sql
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import DEFAULTS, MIN_EVENT_BYTES
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import SourceError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source_sql import PostgresSource, SqliteSource

DEFAULT_TABLE = "ceptra_history"
LOGICAL_COLUMNS = ("part_id", "raft_index", "event_time_ns", "event_id", "partition_key",
                   "schema_key", "payload", "flags", "tiebreak")
# Columns that may be mapped to null ("this table has no such column").
OPTIONAL_COLUMNS = ("raft_index", "flags", "tiebreak")
ORDERINGS = ("raft_index", "event_time")
PARTITION_START_KEYS = ("after_raft_index", "from_event_time_ns")
# Look for later copies of an event in the history (skipped and counted instead of sent).
FIND_COPIES = True


def validate_identifier(name, what, allow_schema=False):
    """Return ``name`` when it is a plain SQL identifier (or ``schema.table``); else raise SourceError."""
    if not sql.is_identifier(name, allow_schema):
        shape = " (optionally schema.table)" if allow_schema else ""
        raise SourceError(
            "historic source: %s %r is not a valid SQL identifier: use letters, digits and "
            "underscores, not starting with a digit%s" % (what, name, shape))
    return name


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
    out["partition_start"] = _partition_start(spec.get("partition_start"), columns)
    part_ids = spec.get("part_ids")
    if part_ids is not None:
        if isinstance(part_ids, (str, bytes)) or not hasattr(part_ids, "__iter__"):
            raise SourceError("historic source: part_ids must be a list of partition ids")
        part_ids = sort_ids(part_ids)
    out["part_ids"] = part_ids
    max_bytes = spec.get("max_event_bytes", DEFAULTS.max_event_bytes) or DEFAULTS.max_event_bytes
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < MIN_EVENT_BYTES:
        raise SourceError("historic source: max_event_bytes must be an integer of at least %d, got %r"
                          % (MIN_EVENT_BYTES, max_bytes))
    out["max_event_bytes"] = max_bytes
    find_copies = spec.get("find_copies", FIND_COPIES)
    if not isinstance(find_copies, bool):
        raise SourceError("historic source: find_copies must be true or false, got %r" % (find_copies,))
    out["find_copies"] = find_copies
    return out


def _partition_start(value, columns):
    """``partition_start``: ``{part_id: {after_raft_index: N} | {from_event_time_ns: T}}``, where
    each partition's replay begins (a full recovery starts after what the partition's baseline
    checkpoint holds); a partition not named starts at the beginning of its history."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceError("historic source: partition_start must be a mapping part_id -> "
                          "{after_raft_index: N} or {from_event_time_ns: T}")
    out = {}
    for part_id, bound in value.items():
        if not isinstance(bound, dict) or len(bound) != 1 or next(iter(bound)) not in PARTITION_START_KEYS:
            raise SourceError("historic source: partition_start.%s must be {after_raft_index: N} or "
                              "{from_event_time_ns: T}, got %r" % (part_id, bound))
        key, number = next(iter(bound.items()))
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise SourceError("historic source: partition_start.%s.%s must be a whole number >= 0, got %r"
                              % (part_id, key, number))
        if key == "after_raft_index" and columns["raft_index"] is None:
            raise SourceError("historic source: partition_start.%s.after_raft_index needs a raft_index column "
                              "(it is mapped to null); start by from_event_time_ns instead" % part_id)
        out[str(part_id)] = {key: number}
    return out


def open_source(spec):
    """Open the historic source described by ``spec`` (see the module docstring and docs)."""
    spec = _normalize_spec(spec)
    if spec["type"] == "sqlite":
        return SqliteSource(spec)
    sql.require_psycopg(SourceError, "the PostgreSQL historic source", "on the host that runs the replay")
    return PostgresSource(spec)
