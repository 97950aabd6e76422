# Internal to ceptra.backfill (not a public API): SQL identifier checks and quoting for the replay engine.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identifier validation and quoting shared by the historic source and the cursor store.

User-supplied names (tables, columns) never reach SQL text unchecked: they must be plain
identifiers (optionally ``schema.table``) and are then quoted for the dialect. Callers keep
their own error class and message: ``is_identifier`` only answers yes or no.
"""

from __future__ import annotations

import re

try:
    from psycopg import sql as pg_sql
except ImportError:  # pragma: no cover - depends on the environment
    pg_sql = None

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
