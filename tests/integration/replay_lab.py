"""Helpers of the replay integration tests: historic data in the documented schema, reads of
the lab's state, and replay runs driven from Python (the engine as the modules run it)."""

import json
import os
import sqlite3
import threading
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

# The lab helpers the runbook tests use, under the names the replay tests know them by.
from .runbook_support.faults import set_fault  # noqa: F401  pylint: disable=unused-import
from .runbook_support.labs import lab_get as lab_json, wait_applied as applied_counts  # noqa: F401  pylint: disable=unused-import

COLUMNS = "part_id, raft_index, event_time_ns, event_id, partition_key, schema_key, payload, flags"
DDL = ("CREATE TABLE {t} (part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL, "
       "event_id TEXT NOT NULL, partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL, "
       "flags TEXT)")
# Historic events start 20 minutes back: inside the lab's lateness and correction horizon.
START_NS = time.time_ns() - 20 * 60 * 1_000_000_000
# Events per partition in the history ``make_run`` replays.
PER_PARTITION = 3000


def history_rows(parts, per_part, start_ns, extra=()):
    """Metric samples in the documented historic schema; ``extra`` rows are added as given."""
    rows = []
    for p in range(parts):
        for i in range(1, per_part + 1):
            payload = json.dumps({"metric": "replay_test_total", "labels": {"player_id": "p%d" % (i % 5)},
                                  "value": float(i % 7)})
            rows.append((str(p), i, start_ns + i * 1_000_000, "h-%d-%06d" % (p, i), "key-%d" % (i % 11),
                         "metric_sample_v1", payload, None))
    return rows + list(extra)


def write_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute(DDL.format(t="ceptra_history"))
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.execute("CREATE INDEX ceptra_history_raft ON ceptra_history (part_id, raft_index)")
    conn.execute("CREATE INDEX ceptra_history_time ON ceptra_history (part_id, event_time_ns, event_id)")
    conn.commit()
    conn.close()


def write_postgres(dsn, table, rows):
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL.format(t=table))
        with conn.cursor().copy("COPY %s (%s) FROM STDIN" % (table, COLUMNS)) as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("CREATE INDEX %s_raft ON %s (part_id, raft_index)" % (table, table))
        conn.execute("CREATE INDEX %s_time ON %s (part_id, event_time_ns, event_id)" % (table, table))


def drop_postgres(dsn, *tables):
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute("DROP TABLE IF EXISTS %s" % table)


def digests(lab, part_ids):
    return {p: lab_json(lab, "/v1/test/metrics-snapshot?part_id=%s" % p)["digest"] for p in part_ids}


def make_run(lab, tmp_path, run_id, **options):
    history = str(tmp_path / "history.db")
    if not os.path.exists(history):
        write_sqlite(history, history_rows(2, PER_PARTITION, START_NS))
    spec = {"type": "sqlite", "path": history, "order_by": "raft_index"}
    cfg = {"run_id": run_id, "cp_audit": False, "batch_events": 200, "initial_rate": 2000.0}
    cfg.update(options)
    client = CeptraClient(lab.url, token=lab.tokens["operator"], timeout=30)
    store = open_cursor_store({"type": "sqlite", "path": str(tmp_path / "cursors.db")})
    return rr.ReplayRun(cfg, client, open_source(spec), store, source_factory=lambda: open_source(spec))


def run_in_background(run):
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=run.run()), daemon=True)
    thread.start()
    return thread, box


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
