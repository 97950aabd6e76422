"""Historic tables for the replay tests: rows in the documented schema, created in SQLite or
in a throw-away PostgreSQL schema, and sources opened on them (``source.open_source``)."""

import json
import sqlite3
import uuid

from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

LOGICAL = ("part_id", "raft_index", "event_time_ns", "event_id", "partition_key", "schema_key", "payload", "flags")
TYPES = {"part_id": "TEXT", "raft_index": "BIGINT", "event_time_ns": "BIGINT", "event_id": "TEXT",
         "partition_key": "TEXT", "schema_key": "TEXT", "payload": "TEXT", "flags": "TEXT"}
NULLABLE = ("raft_index", "flags")


def make_row(part_id, raft_index, ts, event_id, payload=None, flags=None, key="k1"):
    body = json.dumps(payload if payload is not None else {"metric": "m", "labels": {"k": key}, "value": 1.0})
    return {"part_id": part_id, "raft_index": raft_index, "event_time_ns": ts, "event_id": event_id,
            "partition_key": key, "schema_key": "metric_sample_v1", "payload": body, "flags": flags}


class Backend(object):
    """Creates tables in SQLite or in a throw-away PostgreSQL schema and opens sources on them."""

    def __init__(self, kind, tmp_path, dsn=None):
        self.kind = kind
        self.dsn = dsn
        self.sources = []
        if kind == "sqlite":
            self.path = str(tmp_path / "history.db")
            self.conn = sqlite3.connect(self.path)
            self.prefix = ""
        else:
            import psycopg
            # No skip: the PostgreSQL tests fail when the server is unreachable.
            self.conn = psycopg.connect(self.dsn, autocommit=True)
            self.schema = "t_src_" + uuid.uuid4().hex[:12]
            self.conn.execute("CREATE SCHEMA %s" % self.schema)
            self.prefix = self.schema + "."

    def table(self, name):
        return self.prefix + name

    def execute(self, statement):
        self.conn.execute(statement)
        if self.kind == "sqlite":
            self.conn.commit()

    def create(self, rows, name="ceptra_history", loose=False, columns=None):
        """Create table ``name`` (the default schema, or without NOT NULL when ``loose``, to hold
        the malformed rows a foreign table may contain) and insert ``rows`` in the given order."""
        columns = columns or {}
        physical = [columns.get(c, c) for c in LOGICAL]
        defs = ", ".join("%s %s%s" % (phys, TYPES[c], "" if loose or c in NULLABLE else " NOT NULL")
                         for c, phys in zip(LOGICAL, physical))
        self.execute("CREATE TABLE %s (%s)" % (self.table(name), defs))
        marks = ", ".join(["?" if self.kind == "sqlite" else "%s"] * len(LOGICAL))
        insert = "INSERT INTO %s (%s) VALUES (%s)" % (self.table(name), ", ".join(physical), marks)
        values = [tuple(r.get(c) for c in LOGICAL) for r in rows]
        if self.kind == "sqlite":
            self.conn.executemany(insert, values)
            self.conn.commit()
        else:
            with self.conn.cursor() as cur:
                cur.executemany(insert, values)

    def spec(self, **spec):
        """The source spec of a table of this backend (default: ceptra_history)."""
        spec.setdefault("table", self.table("ceptra_history"))
        if self.kind == "sqlite":
            spec.update(type="sqlite", path=self.path)
        else:
            spec.update(type="postgresql", dsn=self.dsn)
        return spec

    def open(self, **spec):
        """A source on a table of this backend, closed with the backend."""
        src = open_source(self.spec(**spec))
        self.sources.append(src)
        return src

    def close(self):
        for src in self.sources:
            src.close()
        if self.kind == "postgresql":
            self.conn.execute("DROP SCHEMA %s CASCADE" % self.schema)
        self.conn.close()
