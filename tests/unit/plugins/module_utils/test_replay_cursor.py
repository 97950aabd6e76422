# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cursor store: round trip, restart, concurrent commits from two processes, pause flag (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sql as sql_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import (
    Cursor, CursorStoreError, open_cursor_store)

COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *([".."] * 4), ".build", "collections")
# Writers in other interpreters import the collection from the same collections path.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.path.abspath(COLLECTIONS))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_spec(request, tmp_path):
    if request.param == "sqlite":
        yield {"type": "sqlite", "path": str(tmp_path / "cursors.db")}
        return
    import psycopg
    # No skip: the PostgreSQL tests fail when the server is unreachable.
    dsn = request.getfixturevalue("pg_dsn")
    conn = psycopg.connect(dsn, autocommit=True)
    schema = "t_cur_" + uuid.uuid4().hex[:12]
    conn.execute("CREATE SCHEMA %s" % schema)
    yield {"type": "postgresql", "dsn": dsn, "table": schema + ".cursors"}
    conn.execute("DROP SCHEMA %s CASCADE" % schema)
    conn.close()


def cursor(seq, position=None, status="running"):
    return Cursor(position if position is not None else (1000 + seq, "e-%d" % seq), seq, seq, seq * 100, status, 1700000000.5 + seq)


def test_commit_load_round_trip(store_spec):
    store = open_cursor_store(store_spec)
    assert store.load("run-1", "0") is None
    assert store.all("run-1") == {}
    store.commit("run-1", "0", cursor(5))
    store.commit("run-1", "1", Cursor(None, 0, 0, 0, "pending", 1.0))
    store.commit("run-1", "0", cursor(9, position=(42,), status="done"))
    store.commit("run-2", "0", cursor(1))
    assert store.load("run-1", "0") == Cursor((42,), 9, 9, 900, "done", 1700000009.5)
    assert store.load("run-1", "1").position is None
    assert set(store.all("run-1")) == {"0", "1"}
    assert store.all("run-2")["0"].position == (1001, "e-1")
    store.close()


def _commit_from_another_process(spec, run_id, part_id, seq):
    store = open_cursor_store(spec)
    store.commit(run_id, part_id, cursor(seq))
    store.close()


def test_cursor_survives_a_process_restart(store_spec):
    # The writer is a separate interpreter that exits before we read.
    code = ("from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import Cursor, open_cursor_store\n"
            "s = open_cursor_store(%r)\n"
            "s.commit('run-r', '7', Cursor((123, 'e-x'), 77, 70, 7000, 'running', 5.0))\n"
            "s.set_paused('run-r', True, 'operator asked')\n"
            "import os; os._exit(0)\n" % (store_spec,))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=CHILD_ENV)
    store = open_cursor_store(store_spec)
    assert store.load("run-r", "7") == Cursor((123, "e-x"), 77, 70, 7000, "running", 5.0)
    assert store.is_paused("run-r") and store.pause_reason("run-r") == "operator asked"
    store.close()


HAMMER = """
import os, time
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import Cursor, open_cursor_store
store = open_cursor_store({spec!r})
open({ready!r}, "w").close()
while not os.path.exists({go!r}):   # start together, so the commits really interleave
    time.sleep(0.005)
for seq in range(1, {count} + 1):
    store.commit("run-c", {part!r}, Cursor((1000 + seq, "e-%d" % seq), seq, seq, seq * 100, "running", 1.0))
store.close()
"""


def test_concurrent_commits_from_two_processes_keep_both(store_spec, tmp_path):
    open_cursor_store(store_spec).close()   # create the tables once, like the runner would
    go = str(tmp_path / "go")
    procs = []
    for part in ("0", "1"):
        ready = str(tmp_path / ("ready-" + part))
        code = HAMMER.format(spec=store_spec, ready=ready, go=go,
                             count=150, part=part)
        procs.append((subprocess.Popen([sys.executable, "-c", code], env=CHILD_ENV), ready))
    deadline = time.time() + 60
    while not all(os.path.exists(ready) for _p, ready in procs) and time.time() < deadline:
        time.sleep(0.01)
    open(go, "w").close()
    for proc, _ready in procs:
        assert proc.wait(timeout=120) == 0
    cursors = open_cursor_store(store_spec).all("run-c")
    assert {k: v.seq for k, v in cursors.items()} == {"0": 150, "1": 150}
    assert cursors["1"].position == (1150, "e-150")


def test_concurrent_commits_from_threads_sharing_one_store(store_spec):
    store = open_cursor_store(store_spec)
    threads = [threading.Thread(target=lambda p=p: [store.commit("run-t", p, cursor(s)) for s in range(1, 51)])
               for p in ("0", "1", "2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: v.seq for k, v in store.all("run-t").items()} == {"0": 50, "1": 50, "2": 50, "3": 50}


def test_pause_flag_is_per_run(store_spec):
    store = open_cursor_store(store_spec)
    other = open_cursor_store(store_spec)   # another worker of the same run
    assert not store.is_paused("run-p")
    store.set_paused("run-p", True, "maintenance window")
    assert other.is_paused("run-p") and other.pause_reason("run-p") == "maintenance window"
    assert not other.is_paused("run-q")
    other.set_paused("run-p", False)
    assert not store.is_paused("run-p") and store.pause_reason("run-p") == ""


def test_sqlite_store_is_durable_wal():
    # The pragmas that make a commit durable are set on every connection.
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        store = open_cursor_store({"type": "sqlite", "path": os.path.join(d, "c.db")})
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
        store.commit("r", "0", cursor(1))
        # Visible to an independent connection right after commit() returns.
        assert sqlite3.connect(os.path.join(d, "c.db")).execute("SELECT seq FROM replay_cursors").fetchone() == (1,)


@pytest.mark.parametrize("spec, message", [
    ({"type": "redis"}, "type must be 'sqlite' or 'postgresql'"),
    ({"type": "sqlite"}, "needs 'path'"),
    ({"type": "sqlite", "path": "/nonexistent-dir/x/c.db"}, "directory /nonexistent-dir/x does not exist"),
    ({"type": "postgresql"}, "needs 'dsn'"),
    ({"type": "postgresql", "dsn": "dbname=never-connected", "table": "c; DROP TABLE x"}, "not a valid SQL identifier"),
    ("sqlite", "must be a mapping"),
])
def test_bad_store_spec_is_refused(spec, message):
    with pytest.raises(CursorStoreError, match=message):
        open_cursor_store(spec)


def test_psycopg_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(sql_mod, "psycopg", None)
    with pytest.raises(CursorStoreError, match=r"pip install 'psycopg\[binary\]'"):
        open_cursor_store({"type": "postgresql", "dsn": "dbname=never-connected"})


@pytest.mark.postgres
def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(CursorStoreError, match="cannot connect to PostgreSQL 127.0.0.1:1/test"):
        open_cursor_store({"type": "postgresql", "dsn": "host=127.0.0.1 port=1 dbname=test user=postgres password=s3cret",
                           "connect_timeout": 2})
    try:
        open_cursor_store({"type": "postgresql", "dsn": "host=127.0.0.1 port=1 dbname=test password=s3cret"})
    except CursorStoreError as exc:
        assert "s3cret" not in str(exc)


def test_counts_round_trip_with_the_cursor(store_spec):
    store = open_cursor_store(store_spec)
    counted = Cursor((7,), 7, 7, 700, "running", 2.0, {"duplicates_skipped": 3, "dead_lettered": 1})
    store.commit("run-n", "0", counted)
    store.commit("run-n", "1", Cursor((1,), 1, 1, 100, "running", 2.0, {}))
    assert store.load("run-n", "0") == counted
    assert store.load("run-n", "1").counts is None          # nothing counted: stored as NULL
    assert store.all("run-n")["0"].counts == {"duplicates_skipped": 3, "dead_lettered": 1}
    store.close()


OLD_SQLITE_SCHEMA = (
    "CREATE TABLE replay_cursors (run_id TEXT NOT NULL, part_id TEXT NOT NULL, position TEXT,"
    " seq INTEGER NOT NULL, events_done INTEGER NOT NULL, bytes_done INTEGER NOT NULL, status TEXT NOT NULL,"
    " updated_at REAL NOT NULL, PRIMARY KEY (run_id, part_id))")
OLD_PG_SCHEMA = (
    "CREATE TABLE {table} (run_id TEXT NOT NULL, part_id TEXT NOT NULL, position TEXT, seq BIGINT NOT NULL,"
    " events_done BIGINT NOT NULL, bytes_done BIGINT NOT NULL, status TEXT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, part_id))")


# The schema after counts, before throttle_rate.
COUNTS_SQLITE_SCHEMA = OLD_SQLITE_SCHEMA.replace(" PRIMARY KEY", " counts TEXT, PRIMARY KEY")
COUNTS_PG_SCHEMA = OLD_PG_SCHEMA.replace(" PRIMARY KEY", " counts TEXT, PRIMARY KEY")


def create_old_store(store_spec, sqlite_schema, pg_schema, values):
    """A cursor store as an earlier release wrote it: its table and one row."""
    if store_spec["type"] == "sqlite":
        conn = sqlite3.connect(store_spec["path"])
        conn.execute(sqlite_schema)
        conn.execute("INSERT INTO replay_cursors VALUES (%s)" % values)
        conn.commit()
        conn.close()
    else:
        import psycopg
        with psycopg.connect(store_spec["dsn"], autocommit=True) as conn:
            conn.execute(pg_schema.format(table=store_spec["table"]))
            conn.execute("INSERT INTO %s VALUES (%s)" % (store_spec["table"], values))


def test_a_store_without_the_counts_column_is_upgraded_on_open(store_spec):
    # Cursor stores written before the counts (and throttle_rate) columns existed keep working:
    # the columns are added when the store is opened, old rows load without them, new commits keep them.
    create_old_store(store_spec, OLD_SQLITE_SCHEMA, OLD_PG_SCHEMA, "'old', '0', '[5]', 5, 5, 500, 'running', 1.0")
    store = open_cursor_store(store_spec)
    assert store.load("old", "0") == Cursor((5,), 5, 5, 500, "running", 1.0, None, None)
    store.commit("old", "0", Cursor((6,), 6, 6, 600, "running", 2.0, {"duplicates_skipped": 1}, 7500.0))
    assert store.load("old", "0").counts == {"duplicates_skipped": 1}
    assert store.load("old", "0").throttle_rate == 7500.0
    store.close()
    again = open_cursor_store(store_spec)    # a second open finds the columns and leaves them
    assert again.load("old", "0").counts == {"duplicates_skipped": 1}
    assert again.load("old", "0").throttle_rate == 7500.0
    again.close()


def test_a_store_without_the_throttle_rate_column_is_upgraded_on_open(store_spec):
    # A store of the release that had counts but no throttle_rate: its rows (counts included)
    # load with no rate (the next slice starts at initial_rate), commits record the rate.
    create_old_store(store_spec, COUNTS_SQLITE_SCHEMA, COUNTS_PG_SCHEMA,
                     "'old', '0', '[5]', 5, 5, 500, 'running', 1.0, '{\"dead_lettered\":2}'")
    store = open_cursor_store(store_spec)
    assert store.load("old", "0") == Cursor((5,), 5, 5, 500, "running", 1.0, {"dead_lettered": 2}, None)
    store.commit("old", "0", Cursor((6,), 6, 6, 600, "running", 2.0, {"dead_lettered": 2}, 12000.5))
    assert store.all("old")["0"].throttle_rate == 12000.5
    store.close()


def test_throttle_rate_round_trips_with_the_cursor(store_spec):
    store = open_cursor_store(store_spec)
    store.commit("run-r", "0", Cursor((7,), 7, 7, 700, "running", 2.0, None, 16250.25))
    store.commit("run-r", "1", Cursor((1,), 1, 1, 100, "running", 2.0))          # no throttle: no rate
    assert store.load("run-r", "0").throttle_rate == 16250.25
    assert store.load("run-r", "1").throttle_rate is None
    store.commit("run-r", "0", Cursor((8,), 8, 8, 800, "running", 3.0, None, 900.0))   # backed off
    assert store.all("run-r")["0"] == Cursor((8,), 8, 8, 800, "running", 3.0, None, 900.0)
    store.close()


def test_worker_group_is_recorded_once_and_replaced_on_request(store_spec):
    store = open_cursor_store(store_spec)
    assert store.worker_group("run-w") is None
    assert store.register_worker_group("run-w", ["b", "a"]) == ["a", "b"]
    assert store.register_worker_group("run-w", ["c"]) == ["a", "b"]          # the first list stays
    other = open_cursor_store(store_spec)                                     # another worker sees it
    assert other.worker_group("run-w") == ["a", "b"] and other.worker_group("run-x") is None
    assert other.register_worker_group("run-w", ["c"], replace=True) == ["c"]
    assert store.worker_group("run-w") == ["c"]
    other.close()
    store.close()


def test_workers_opening_a_new_store_at_once_all_succeed(store_spec):
    """The slices of an AWX job open the same, not yet created store together: every one of
    them gets a working store (the losers of CREATE TABLE's race see the winner's table)."""
    for attempt in range(40):
        spec = dict(store_spec)
        if spec["type"] == "postgresql":
            spec["table"] = "%s_%d" % (store_spec["table"], attempt)
        else:
            spec["path"] = "%s.%d" % (store_spec["path"], attempt)
        start, errors, stores = threading.Barrier(8), [], []

        def open_one():
            start.wait()
            try:
                stores.append(open_cursor_store(spec))
            except CursorStoreError as exc:
                errors.append(exc.message)

        threads = [threading.Thread(target=open_one) for _dummy in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [] and len(stores) == 8
        for number, store in enumerate(stores):
            store.commit("race", str(number), cursor(number + 1))
        assert sorted(stores[0].all("race")) == [str(n) for n in range(8)]
        for store in stores:
            store.close()
