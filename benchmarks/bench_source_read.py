"""Benchmark: how fast the historic sources read events alone (no cluster, no sender).

Seeds N events (default 1,000,000) over P partitions in the default historic schema, once
into SQLite and once into PostgreSQL (bulk: executemany in one transaction / COPY), then
reads every partition to the end in keyset pages exactly as the replay worker does
(``read(part, after, after_seq, limit)``) and prints events/s for each source, plus the
peak page size seen (it never exceeds ``limit + 1``: the reader never loads a table).

The replay benchmarks compare the worker's throughput with this "source read alone"
figure: ``from bench_source_read import measure_source_read``.

Run: .venv/bin/python benchmarks/bench_source_read.py [--events N] [--partitions P]
     [--limit L] [--only sqlite|postgresql] [--dsn DSN]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
_link = os.path.join(COLLECTIONS, "ansible_collections", "ceptra", "backfill")
if not os.path.lexists(_link):
    os.makedirs(os.path.dirname(_link), exist_ok=True)
    os.symlink(ROOT, _link)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source  # noqa: E402

DEFAULT_DSN = os.environ.get("CEPTRA_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
COLUMNS = ("part_id", "raft_index", "event_time_ns", "event_id", "partition_key", "schema_key", "payload", "flags")
DDL = """CREATE TABLE {table} (
  part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL, event_id TEXT NOT NULL,
  partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL, flags TEXT)"""
INDEXES = ("CREATE INDEX {name}_raft ON {table} (part_id, raft_index)",
           "CREATE INDEX {name}_time ON {table} (part_id, event_time_ns, event_id)")
START_NS = 1732600000000000000


def synthetic_rows(events, partitions, start_ns=START_NS, step_ns=10000000):
    """Rows shaped like `ceptra-lab seed-history` output: metric samples, 16 keys per partition,
    event time ``start_ns + i * step_ns`` for a partition's i-th event."""
    per_part = events // partitions
    for p in range(partitions):
        for i in range(per_part):
            key = "player-%d" % (i % 16)
            payload = json.dumps({"metric": "anti_cheat_flags_total", "labels": {"queue": "ranked", "player_id": key},
                                  "value": 1.0}, separators=(",", ":"))
            yield (str(p), i + 1, start_ns + i * step_ns, "h-%d-%010d" % (p, i), key, "metric_sample_v1", payload, None)


def seed_sqlite(path, events, partitions, start_ns=START_NS, step_ns=10000000):
    """Write the events into a new SQLite file at ``path`` (indexes built after the load)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(DDL.format(table="ceptra_history"))
    conn.executemany("INSERT INTO ceptra_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     synthetic_rows(events, partitions, start_ns, step_ns))
    for statement in INDEXES:
        conn.execute(statement.format(name="ceptra_history", table="ceptra_history"))
    conn.commit()
    conn.close()


def seed_postgresql(dsn, schema, events, partitions):
    """Write the events into ``schema.ceptra_history`` with COPY; returns the table name."""
    import psycopg
    table = "%s.ceptra_history" % schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA %s" % schema)
        conn.execute(DDL.format(table=table))
        with conn.cursor() as cur:
            with cur.copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(COLUMNS))) as copy:
                for row in synthetic_rows(events, partitions):
                    copy.write_row(row)
        for statement in INDEXES:
            conn.execute(statement.format(name="ceptra_history", table=table))
        conn.execute("ANALYZE %s" % table)
    return table


def measure_source_read(spec, part_ids, limit=1000):
    """Read every partition in ``part_ids`` to the end through ``spec``; return events per second.

    This is the "source read alone" figure the replay benchmarks divide by. Malformed rows
    count as read (they cost a row each); the caller's data is expected to be clean.
    """
    rate, _stats = measure_source_read_detailed(spec, part_ids, limit)
    return rate


def measure_source_read_detailed(spec, part_ids, limit=1000):
    """Like ``measure_source_read`` but also returns {"events", "seconds", "max_page"}."""
    source = open_source(spec)
    try:
        events = 0
        max_page = 0
        started = time.perf_counter()
        for part_id in part_ids:
            after, after_seq = None, 0
            while True:
                page = source.read(part_id, after, after_seq, limit)
                if not page:
                    break
                events += len(page)
                max_page = max(max_page, len(page))
                after, after_seq = page[-1].position, page[-1].seq
        seconds = time.perf_counter() - started
    finally:
        source.close()
    return events / seconds if seconds > 0 else float("inf"), {"events": events, "seconds": seconds, "max_page": max_page}


# What is measured: time order, raft order with the duplicate-copy lookup (the default) and without.
VARIANTS = (("event_time", {"order_by": "event_time"}),
            ("raft_index", {"order_by": "raft_index"}),
            ("raft_index,find_copies=false", {"order_by": "raft_index", "find_copies": False}))


def report(kind, label, rate, stats, limit):
    """Print one measurement line (peak RSS shows that memory stays flat as events grow)."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("%-10s %-29s read %d events in %6.2f s: %9.0f events/s (largest page %d, limit %d; peak RSS %.0f MB)"
          % (kind, label, stats["events"], stats["seconds"], rate, stats["max_page"], limit, peak_mb))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--limit", type=int, default=1000, help="page size (events per read)")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args(argv)
    part_ids = [str(p) for p in range(args.partitions)]
    results = {}
    workdir = tempfile.mkdtemp(prefix="bench_source_read_")
    try:
        if args.only in (None, "sqlite"):
            path = os.path.join(workdir, "history.db")
            t0 = time.perf_counter()
            seed_sqlite(path, args.events, args.partitions)
            print("sqlite: seeded %d events in %.1f s" % (args.events, time.perf_counter() - t0))
            base = {"type": "sqlite", "path": path}
            for label, extra in VARIANTS:
                rate, stats = measure_source_read_detailed(dict(base, **extra), part_ids, args.limit)
                results["sqlite/" + label] = rate
                report("sqlite", label, rate, stats, args.limit)
        if args.only in (None, "postgresql"):
            import psycopg
            schema = "bench_src_" + uuid.uuid4().hex[:10]
            t0 = time.perf_counter()
            try:
                table = seed_postgresql(args.dsn, schema, args.events, args.partitions)
                print("postgresql: seeded %d events in %.1f s" % (args.events, time.perf_counter() - t0))
                base = {"type": "postgresql", "dsn": args.dsn, "table": table}
                for label, extra in VARIANTS:
                    rate, stats = measure_source_read_detailed(dict(base, **extra), part_ids, args.limit)
                    results["postgresql/" + label] = rate
                    report("postgresql", label, rate, stats, args.limit)
            finally:
                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    conn.execute("DROP SCHEMA IF EXISTS %s CASCADE" % schema)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for kind in ("sqlite", "postgresql"):
        if kind + "/raft_index" in results:
            print("%s: raft order with copy lookup / time order: %.2f"
                  % (kind, results[kind + "/raft_index"] / results[kind + "/event_time"]))
    if "sqlite/event_time" in results and "postgresql/event_time" in results:
        print("ratio postgresql/sqlite (event_time order): %.2f" % (results["postgresql/event_time"] / results["sqlite/event_time"]))
    return results


if __name__ == "__main__":
    main()
