# Internal to ceptra.backfill (not a public API): SQL identifiers and the PostgreSQL connection of the replay engine.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the historic source and the cursor store share about SQL.

- Identifiers: user-supplied names (tables, columns) never reach SQL text unchecked: they
  must be plain identifiers (optionally ``schema.table``) and are then quoted for the
  dialect. ``is_identifier`` only answers yes or no; callers word their own error.
- PostgreSQL: the one import of psycopg 3 (optional: SQLite needs nothing), the message
  when it is missing, and :class:`PgConnection`, one autocommit connection that names
  its server without the password and reconnects once when a statement finds it dropped.
"""

from __future__ import annotations

import re
import time

try:
    import psycopg
    from psycopg import sql as pg_sql
except ImportError:  # pragma: no cover - depends on the environment
    psycopg = None
    pg_sql = None

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PSYCOPG_MISSING = ("%s needs the Python package psycopg 3 %s: pip install 'psycopg[binary]'")
# Seconds to wait for a connection unless the spec says ``connect_timeout``.
CONNECT_TIMEOUT_S = 10
# A dropped connection is retried once after this pause (long runs outlive idle timeouts and failovers).
RECONNECT_PAUSE_S = 0.5


def is_identifier(name, allow_schema=False):
    """True when ``name`` is a plain SQL identifier (or, with ``allow_schema``, ``schema.table``)."""
    parts = name.split(".") if (allow_schema and isinstance(name, str)) else [name]
    return len(parts) <= 2 and all(isinstance(p, str) and IDENTIFIER_RE.match(p) for p in parts)


def sqlite_quote(name):
    """``name`` (``table`` or ``schema.table``) double-quoted for SQLite, each part on its own."""
    return ".".join('"%s"' % part.replace('"', '""') for part in name.split("."))


def pg_identifier(name):
    """``name`` (``table`` or ``schema.table``) as a psycopg ``sql.Identifier`` (needs psycopg)."""
    return pg_sql.Identifier(*name.split("."))


def require_psycopg(error, what, where):
    """Raise ``error`` (a ReplayError class) saying ``what`` needs psycopg ``where`` when it is missing."""
    if psycopg is None:
        raise error(PSYCOPG_MISSING % (what, where))


def describe_dsn(dsn):
    """``PostgreSQL host:port/dbname`` of a DSN: never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "PostgreSQL"
    return "PostgreSQL %s:%s/%s" % (info.get("host", "localhost"), info.get("port", 5432), info.get("dbname", ""))


class PgConnection(object):
    """One autocommit connection of the historic source or the cursor store.

    ``error`` is the caller's error class and ``label`` its name in messages ("historic
    source", "cursor store"); ``suffix`` is added to the server's description (e.g. the
    table). Every statement the callers send is idempotent, so a statement that finds the
    connection dropped reconnects once and is sent again.
    """

    def __init__(self, dsn, connect_timeout, error, label, suffix=""):
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.error = error
        self.label = label
        self.description = describe_dsn(dsn) + suffix
        self.conn = None
        self.connect()

    def connect(self):
        """Open (or reopen) the connection; the caller's error names the server on failure."""
        try:
            self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise self.error("%s: cannot connect to %s: %s" % (self.label, self.description, str(exc).strip()))

    def execute(self, query, params=(), fetch=True, tolerate=()):
        """Run one statement; its rows when ``fetch``. Exceptions in ``tolerate`` return None
        (e.g. two workers racing ``CREATE TABLE IF NOT EXISTS``)."""
        for attempt in (1, 2):
            try:
                cursor = self.conn.execute(query, params)
                return cursor.fetchall() if fetch else None
            except tolerate:
                return None
            except psycopg.OperationalError as exc:
                if attempt == 2 or not self.conn.closed:
                    raise self.failed(exc)
                time.sleep(RECONNECT_PAUSE_S)
                self.connect()
            except psycopg.Error as exc:
                raise self.failed(exc)
        return None  # not reached: the second attempt returns or raises

    def failed(self, exc, what="query failed"):
        """The caller's error for a failed statement (``what`` says which)."""
        return self.error("%s %s: %s: %s" % (self.label, self.description, what, str(exc).strip()))

    def as_string(self, query):
        """The SQL text of a composed query (for messages and the statement log)."""
        return query.as_string(self.conn)

    def close(self):
        if self.conn is not None:
            self.conn.close()
