# Internal to ceptra.backfill (not a public API): the replay cursor store.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-partition replay cursors and the per-run pause flag.

A cursor says "every event of this partition up to ``position`` (replay seq ``seq``) was
acknowledged by the cluster". The runner commits one only after those acks, so a restart
resumes exactly there. Two backends:

- SQLite file (default, one host): WAL journal, ``synchronous=FULL`` so a commit survives
  power loss, ``BEGIN IMMEDIATE`` + a busy timeout so several processes can share the file.
- PostgreSQL table (workers on several hosts): created if missing, one upsert statement
  per commit (``INSERT .. ON CONFLICT .. DO UPDATE``), autocommit, so each commit is
  atomic and durable with the server's default ``synchronous_commit``.

Each commit touches only its own ``(run_id, part_id)`` row, so workers committing
different partitions of the same run never overwrite each other.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import NamedTuple

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sql
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError

DEFAULT_TABLE = "ceptra_replay_cursors"
BUSY_TIMEOUT_S = 30.0


class CursorStoreError(ReplayError):
    """The cursor store cannot be opened or written; the message says what to fix."""


class Cursor(NamedTuple):
    """Progress of one partition in one run (``position`` None = nothing acknowledged yet).

    ``status`` is ``pending``, ``running``, ``done`` or ``stopped:<report JSON>`` (see
    :func:`stopped_status` / :func:`parse_status`).
    """
    position: tuple | None
    seq: int
    events_done: int
    bytes_done: int
    status: str
    updated_at: float
    counts: dict | None = None   # rows passed without sending: {"duplicates_skipped": n, "dead_lettered": n}
    # the throttle's target rate (events/s) when the cursor was committed: the next time slice
    # starts there instead of at initial_rate (None: no throttle, or a cursor from before)
    throttle_rate: float | None = None


STOPPED_PREFIX = "stopped:"


def stopped_status(report):
    """The status of a partition that stopped, carrying its report (event, position, reason, message)."""
    return STOPPED_PREFIX + json.dumps(report, sort_keys=True)


def parse_status(status):
    """Split a cursor status into ``(state, report dict or None)``."""
    status = status or "pending"
    if status.startswith(STOPPED_PREFIX):
        try:
            return "stopped", json.loads(status[len(STOPPED_PREFIX):])
        except ValueError:
            return "stopped", {"message": status[len(STOPPED_PREFIX):]}
    return status, None


def _position_to_json(position):
    return None if position is None else json.dumps(list(position), separators=(",", ":"))


def _position_from_json(text):
    if text is None:
        return None
    value = json.loads(text)
    return None if value is None else tuple(value)


def _counts_to_json(counts):
    return json.dumps(counts, sort_keys=True, separators=(",", ":")) if counts else None


def _counts_from_json(text):
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) and value else None


def _rate_to_db(rate):
    return float(rate) if rate else None


def _row_to_cursor(row):
    position, seq, events_done, bytes_done, status, updated_at, counts, throttle_rate = row
    return Cursor(_position_from_json(position), int(seq), int(events_done), int(bytes_done), status,
                  float(updated_at), _counts_from_json(counts),
                  float(throttle_rate) if throttle_rate is not None else None)


# The columns of a cursor row, in Cursor order.
CURSOR_COLUMNS = "position, seq, events_done, bytes_done, status, updated_at, counts, throttle_rate"
# Columns added after the first release, with their type per backend: a store created before
# them gets them when it is opened (SqliteCursorStore._add_missing_columns, PostgresCursorStore).
ADDED_COLUMNS = (("counts", "TEXT", "TEXT"), ("throttle_rate", "REAL", "DOUBLE PRECISION"))


def _cursor_params(run_id, part_id, cursor):
    """The values of a cursor row (run_id, part_id, then CURSOR_COLUMNS) for an upsert."""
    return (str(run_id), str(part_id), _position_to_json(cursor.position), int(cursor.seq),
            int(cursor.events_done), int(cursor.bytes_done), str(cursor.status),
            float(cursor.updated_at or time.time()), _counts_to_json(cursor.counts), _rate_to_db(cursor.throttle_rate))


def _upsert_cursor(table, mark):
    """The upsert of one cursor row (``mark``: the driver's placeholder)."""
    columns = CURSOR_COLUMNS.split(", ")
    return ("INSERT INTO " + table + " (run_id, part_id, " + CURSOR_COLUMNS + ") VALUES ("
            + ", ".join([mark] * (len(columns) + 2)) + ") ON CONFLICT (run_id, part_id) DO UPDATE SET "
            + ", ".join("%s = EXCLUDED.%s" % (c, c) for c in columns))


def _check_cursor(cursor):
    if not isinstance(cursor, Cursor):
        cursor = Cursor(*cursor)
    if cursor.position is not None and not isinstance(cursor.position, (tuple, list)):
        raise CursorStoreError("cursor position must be a tuple or None, got %r" % (cursor.position,))
    return cursor


def _validate_table(name):
    if not sql.is_identifier(name, allow_schema=True):
        raise CursorStoreError(
            "cursor store: table %r is not a valid SQL identifier: use letters, digits and underscores, "
            "not starting with a digit (optionally schema.table)" % (name,))
    return name


def open_cursor_store(spec):
    """Open ``{"type": "sqlite", "path"}`` or ``{"type": "postgresql", "dsn", "table"}``."""
    if not isinstance(spec, dict):
        raise CursorStoreError("cursor store: the spec must be a mapping with a type")
    kind = spec.get("type", "sqlite")
    if kind == "sqlite":
        if not spec.get("path"):
            raise CursorStoreError("cursor store: type sqlite needs 'path' (a file; it is created if missing)")
        return SqliteCursorStore(spec["path"])
    if kind in ("postgresql", "postgres"):
        if not spec.get("dsn"):
            raise CursorStoreError("cursor store: type postgresql needs 'dsn'")
        return PostgresCursorStore(spec["dsn"], _validate_table(spec.get("table") or DEFAULT_TABLE),
                                   connect_timeout=int(spec.get("connect_timeout", sql.CONNECT_TIMEOUT_S)))
    raise CursorStoreError("cursor store: type must be 'sqlite' or 'postgresql', got %r" % (kind,))


class CursorStore(object):
    """Interface shared by the backends (see the module docstring)."""

    def load(self, run_id, part_id):
        """The committed cursor of one partition, or None when the run never committed it."""
        raise NotImplementedError

    def commit(self, run_id, part_id, cursor):
        """Store ``cursor`` for the partition atomically and durably (returns after fsync/commit)."""
        raise NotImplementedError

    def all(self, run_id):
        """Every committed cursor of a run: ``{part_id: Cursor}``."""
        raise NotImplementedError

    def set_paused(self, run_id, paused, reason=""):
        """Raise or clear the pause flag every worker of the run polls."""
        raise NotImplementedError

    def is_paused(self, run_id):
        """True while the run's pause flag is raised."""
        return bool(self._pause_row(run_id)[0])

    def pause_reason(self, run_id):
        """The reason given with the pause flag ("" when not paused)."""
        paused, reason = self._pause_row(run_id)
        return reason if paused else ""

    def _pause_row(self, run_id):
        """``(paused, reason)`` of the run as stored by the backend."""
        raise NotImplementedError

    def worker_group(self, run_id):
        """The worker host list the run's fan-out was registered with (sorted), or None."""
        raise NotImplementedError

    def register_worker_group(self, run_id, hosts, replace=False):
        """Record ``hosts`` as the run's worker group unless one is recorded already
        (``replace``: overwrite it); returns the recorded list. Atomic across workers."""
        raise NotImplementedError

    def close(self):
        """Release the connection."""
        raise NotImplementedError


class SqliteCursorStore(CursorStore):
    """Cursor store in one SQLite file (created with its directory's permissions if missing)."""

    def __init__(self, path):
        self.path = os.path.abspath(os.path.expanduser(path))
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise CursorStoreError("cursor store: directory %s does not exist (create it or choose another path)" % directory)
        self._lock = threading.Lock()
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            self._set_wal()
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=%d" % int(BUSY_TIMEOUT_S * 1000))
            self._write(
                "CREATE TABLE IF NOT EXISTS replay_cursors ("
                " run_id TEXT NOT NULL, part_id TEXT NOT NULL, position TEXT, seq INTEGER NOT NULL,"
                " events_done INTEGER NOT NULL, bytes_done INTEGER NOT NULL, status TEXT NOT NULL,"
                " updated_at REAL NOT NULL, counts TEXT, throttle_rate REAL, PRIMARY KEY (run_id, part_id))",
                "CREATE TABLE IF NOT EXISTS replay_pause ("
                " run_id TEXT PRIMARY KEY, paused INTEGER NOT NULL, reason TEXT NOT NULL, updated_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS replay_workers ("
                " run_id TEXT PRIMARY KEY, hosts TEXT NOT NULL, updated_at REAL NOT NULL)")
            self._add_missing_columns()
        except sqlite3.Error as exc:
            raise CursorStoreError("cursor store %s cannot be opened: %s" % (self.path, exc))

    def _set_wal(self):
        """WAL mode. Switching a new file to it needs the file to itself, and SQLite answers
        "database is locked" at once (no busy wait) while another worker opening the same new
        store holds it: retry within the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _add_missing_columns(self):
        """A store created before a column of ADDED_COLUMNS existed lacks it: add it (once)."""
        columns = [row[1] for row in self._read("PRAGMA table_info(replay_cursors)", ())]
        for name, kind, _pg_kind in ADDED_COLUMNS:
            if name in columns:
                continue
            try:
                self._write("ALTER TABLE replay_cursors ADD COLUMN %s %s" % (name, kind))
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):   # another process added it first
                    raise

    def _write(self, *statements, params=()):
        """Run statements in one IMMEDIATE transaction (takes the write lock up front)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self._conn.execute(statement, params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _read(self, query, params):
        with self._lock:
            return self._conn.execute(query, params).fetchall()

    def load(self, run_id, part_id):
        rows = self._read("SELECT " + CURSOR_COLUMNS + " FROM replay_cursors"
                          " WHERE run_id = ? AND part_id = ?", (str(run_id), str(part_id)))
        return _row_to_cursor(rows[0]) if rows else None

    def commit(self, run_id, part_id, cursor):
        params = _cursor_params(run_id, part_id, _check_cursor(cursor))
        try:
            self._write(_upsert_cursor("replay_cursors", "?"), params=params)
        except sqlite3.Error as exc:
            raise CursorStoreError("cursor store %s: commit of partition %s failed: %s" % (self.path, part_id, exc))

    def all(self, run_id):
        rows = self._read("SELECT part_id, " + CURSOR_COLUMNS +
                          " FROM replay_cursors WHERE run_id = ?", (str(run_id),))
        return {row[0]: _row_to_cursor(row[1:]) for row in rows}

    def set_paused(self, run_id, paused, reason=""):
        try:
            self._write(
                "INSERT INTO replay_pause (run_id, paused, reason, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET paused = excluded.paused, reason = excluded.reason,"
                " updated_at = excluded.updated_at",
                params=(str(run_id), 1 if paused else 0, str(reason or ""), time.time()))
        except sqlite3.Error as exc:
            raise CursorStoreError("cursor store %s: cannot set the pause flag: %s" % (self.path, exc))

    def _pause_row(self, run_id):
        rows = self._read("SELECT paused, reason FROM replay_pause WHERE run_id = ?", (str(run_id),))
        return rows[0] if rows else (0, "")

    def worker_group(self, run_id):
        rows = self._read("SELECT hosts FROM replay_workers WHERE run_id = ?", (str(run_id),))
        return json.loads(rows[0][0]) if rows else None

    def register_worker_group(self, run_id, hosts, replace=False):
        conflict = "DO UPDATE SET hosts = excluded.hosts, updated_at = excluded.updated_at" if replace else "DO NOTHING"
        try:
            self._write("INSERT INTO replay_workers (run_id, hosts, updated_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (run_id) " + conflict,
                        params=(str(run_id), json.dumps(sorted(hosts)), time.time()))
        except sqlite3.Error as exc:
            raise CursorStoreError("cursor store %s: cannot record the worker group: %s" % (self.path, exc))
        return self.worker_group(run_id)

    def close(self):
        with self._lock:
            self._conn.close()


class PostgresCursorStore(CursorStore):
    """Cursor store in a PostgreSQL table (and ``<table>_pause``), shared by workers on many hosts."""

    def __init__(self, dsn, table, connect_timeout=sql.CONNECT_TIMEOUT_S):
        sql.require_psycopg(CursorStoreError, "the PostgreSQL cursor store", "on every replay worker")
        self.table = table
        self._lock = threading.Lock()
        self._cursors = sql.pg_identifier(table)
        self._pause = sql.pg_identifier(table + "_pause")  # same schema, table name + "_pause"
        self._workers = sql.pg_identifier(table + "_workers")
        self._pg = sql.PgConnection(dsn, connect_timeout, CursorStoreError, "cursor store", " table %s" % table)
        self._execute(
            "CREATE TABLE IF NOT EXISTS {c} ("
            " run_id TEXT NOT NULL, part_id TEXT NOT NULL, position TEXT, seq BIGINT NOT NULL,"
            " events_done BIGINT NOT NULL, bytes_done BIGINT NOT NULL, status TEXT NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL, counts TEXT, throttle_rate DOUBLE PRECISION,"
            " PRIMARY KEY (run_id, part_id))", ())
        # Stores created before a column of ADDED_COLUMNS existed get it here. Look first: ALTER
        # TABLE takes an exclusive lock, and other workers commit to this table several times a second.
        for name, _kind, pg_kind in ADDED_COLUMNS:
            try:
                self._execute("SELECT %s FROM {c} LIMIT 0" % name, ())
            except CursorStoreError:
                self._execute("ALTER TABLE {c} ADD COLUMN IF NOT EXISTS %s %s" % (name, pg_kind), ())
        self._execute(
            "CREATE TABLE IF NOT EXISTS {p} ("
            " run_id TEXT PRIMARY KEY, paused BOOLEAN NOT NULL, reason TEXT NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL)", ())
        self._execute(
            "CREATE TABLE IF NOT EXISTS {w} ("
            " run_id TEXT PRIMARY KEY, hosts TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)", ())

    def _execute(self, template, params, fetch=False):
        query = sql.pg_sql.SQL(template).format(c=self._cursors, p=self._pause, w=self._workers)
        # Workers racing CREATE TABLE IF NOT EXISTS (the slices of an AWX job start together): the
        # loser waits for the winner's commit, then fails on the catalog's unique index
        # (UniqueViolation) or on the table's row type (DuplicateObject, 'type "..." already
        # exists') or, rarely, as DuplicateTable: each means the table exists now.
        errors = sql.psycopg.errors
        tolerate = ((errors.UniqueViolation, errors.DuplicateObject, errors.DuplicateTable)
                    if template.startswith("CREATE TABLE") else ())
        with self._lock:
            return self._pg.execute(query, params, fetch=fetch, tolerate=tolerate)

    def load(self, run_id, part_id):
        rows = self._execute("SELECT " + CURSOR_COLUMNS + " FROM {c}"
                             " WHERE run_id = %s AND part_id = %s", (str(run_id), str(part_id)), fetch=True)
        return _row_to_cursor(rows[0]) if rows else None

    def commit(self, run_id, part_id, cursor):
        self._execute(_upsert_cursor("{c}", "%s"), _cursor_params(run_id, part_id, _check_cursor(cursor)))

    def all(self, run_id):
        rows = self._execute("SELECT part_id, " + CURSOR_COLUMNS +
                             " FROM {c} WHERE run_id = %s", (str(run_id),), fetch=True)
        return {row[0]: _row_to_cursor(row[1:]) for row in rows}

    def set_paused(self, run_id, paused, reason=""):
        self._execute(
            "INSERT INTO {p} (run_id, paused, reason, updated_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET paused = EXCLUDED.paused, reason = EXCLUDED.reason,"
            " updated_at = EXCLUDED.updated_at",
            (str(run_id), bool(paused), str(reason or ""), time.time()))

    def _pause_row(self, run_id):
        rows = self._execute("SELECT paused, reason FROM {p} WHERE run_id = %s", (str(run_id),), fetch=True)
        return rows[0] if rows else (False, "")

    def worker_group(self, run_id):
        rows = self._execute("SELECT hosts FROM {w} WHERE run_id = %s", (str(run_id),), fetch=True)
        return json.loads(rows[0][0]) if rows else None

    def register_worker_group(self, run_id, hosts, replace=False):
        conflict = "DO UPDATE SET hosts = EXCLUDED.hosts, updated_at = EXCLUDED.updated_at" if replace else "DO NOTHING"
        self._execute("INSERT INTO {w} (run_id, hosts, updated_at) VALUES (%s, %s, %s) ON CONFLICT (run_id) " + conflict,
                      (str(run_id), json.dumps(sorted(hosts)), time.time()))
        return self.worker_group(run_id)

    def close(self):
        with self._lock:
            self._pg.close()
