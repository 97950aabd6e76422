# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The four defects of issue 10, each reproduced as found (each failed before the resume
position carried the rank among rows sharing a key):

1. PostgreSQL, a repeated ordering key without tiebreak: the documented recovery (stop at
   the "duplicate ordering key" row, rerun with dead_letter and retry_stopped) lost the row;
2. PostgreSQL, event-time order, stored copies: a cut run undercounted events_done and
   duplicates_skipped and shifted later rows' replay_seq;
3. find_copies: false was ignored in event-time order (copies skipped, not sent) (the lab
   test ``test_find_copies_false_*`` shows the cluster's dedup keeping the promise);
4. one NULL in an ordering column aborted the whole run: traceback and exit 1 from the CLI,
   the clean partitions not replayed.
"""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import cli
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

from ..test_support.control_plane import ControlPlane
from ..test_support.historic_tables import Backend, make_row
from ..test_support.replay_fakes import MemoryCursorStore, write_history


@pytest.fixture
def pg(tmp_path, pg_dsn):
    b = Backend("postgresql", tmp_path, pg_dsn)
    yield b
    b.close()


def replay(spec, cluster, store, tmp_path, **options):
    source = open_source(spec)
    try:
        cfg = {"run_id": "r10", "throttle": False, "cp_audit": False, "commit_interval_s": 0.0,
               "audit_file": str(tmp_path / "audit.jsonl")}
        cfg.update(options)
        return rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {}).run()
    finally:
        source.close()


@pytest.mark.postgres
def test_repeated_raft_index_row_is_dead_lettered_on_the_documented_recovery_path(pg, tmp_path):
    rows = [make_row("0", i, 1000 + i, "e-%02d" % i) for i in range(1, 11)]
    rows.insert(3, make_row("0", 5, 2000, "e-dup"))   # a second, different event at raft_index 5
    pg.create(rows)
    spec = pg.spec(order_by="raft_index")
    cluster, store = ControlPlane(partitions=1, event_id_dedup=False), MemoryCursorStore()
    first = replay(spec, cluster, store, tmp_path)
    [report] = first["stopped"]
    assert report["seq"] == 6 and "duplicate ordering key" in report["message"]
    dead = tmp_path / "dead.jsonl"
    second = replay(spec, cluster, store, tmp_path, on_bad_row="dead_letter", dead_letter_path=str(dead),
                    retry_stopped=True)
    assert second["done"] and second["stopped"] == []
    [line] = [json.loads(text) for text in dead.read_text().splitlines()]
    assert line["seq"] == 6 and line["position"] == [5, 2] and line["row"]["raft_index"] == 5
    part = second["partitions"]["0"]
    assert (part["events_done"], part["dead_lettered"], part["events_total"]) == (11, 1, 11)
    assert sorted(cluster.applied["0"]) == ["e-%02d" % i for i in range(1, 11)]


@pytest.mark.postgres
def test_copies_in_event_time_order_keep_their_count_and_seqs_across_slices(pg, tmp_path):
    rows = [make_row("0", i, 1000 + i, "e-%02d" % i) for i in range(1, 13)]
    rows += [make_row("0", 50 + i, 1000 + i, "e-%02d" % i) for i in (3, 3, 7, 12)]   # stored copies
    pg.create(rows)
    spec = pg.spec()                # order_by event_time (the default), no tiebreak column

    def applied_seqs(cluster):
        return [(m["event_id"], m["replay_seq"]) for call in cluster.calls if call.route == "append_stream"
                for m in call.body]

    uncut_cluster, uncut_store = ControlPlane(partitions=1, event_id_dedup=False), MemoryCursorStore()
    uncut = replay(spec, uncut_cluster, uncut_store, tmp_path)["partitions"]["0"]
    assert (uncut["events_done"], uncut["duplicates_skipped"]) == (16, 4)

    class Slicing(ControlPlane):
        """Ends the worker's time slice after every request."""
        run = None

        def _post_append_stream(self, call):
            self.run.request_stop()
            return super()._post_append_stream(call)

    cluster, store = Slicing(partitions=1, event_id_dedup=False), MemoryCursorStore()
    for dummy in range(40):
        source = open_source(spec)
        cfg = {"run_id": "r10", "throttle": False, "cp_audit": False, "batch_events": 2, "max_window": 1}
        cluster.run = rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {})
        result = cluster.run.run()
        source.close()
        if result["done"]:
            break
    part = result["partitions"]["0"]
    assert (part["events_done"], part["duplicates_skipped"]) == (16, 4)
    assert store.load("r10", "0").seq == uncut_store.load("r10", "0").seq == 16
    assert sorted(set(applied_seqs(cluster))) == sorted(set(applied_seqs(uncut_cluster)))


def test_find_copies_false_sends_copies_in_event_time_order_too(tmp_path):
    history = str(tmp_path / "history.db")
    write_history(history, parts=1, n=10)
    conn = sqlite3.connect(history)
    conn.execute("INSERT INTO ceptra_history SELECT part_id, raft_index + 100, event_time_ns, event_id, partition_key,"
                 " schema_key, payload, flags FROM ceptra_history WHERE raft_index IN (2, 5)")
    conn.commit()
    conn.close()
    for order_by in ("event_time", "raft_index"):
        cluster = ControlPlane(partitions=1)       # the contract's cluster: event_id dedup for every event
        spec = {"type": "sqlite", "path": history, "order_by": order_by, "find_copies": False}
        result = replay(spec, cluster, MemoryCursorStore(), tmp_path, run_id="nf-" + order_by)
        sent = [m["event_id"] for call in cluster.calls if call.route == "append_stream" for m in call.body]
        assert len(sent) == 12 and result["duplicates_skipped"] == 0, order_by
        assert result["partitions"]["0"]["duplicates"] == 2 and len(cluster.applied["0"]) == 10


@pytest.fixture
def null_history(tmp_path, monkeypatch):
    history = str(tmp_path / "history.db")
    write_history(history, parts=3, n=20)
    conn = sqlite3.connect(history)
    conn.execute("UPDATE ceptra_history SET raft_index = NULL WHERE part_id = '1' AND raft_index = 7")
    conn.commit()
    conn.close()
    cluster = ControlPlane(partitions=3)
    monkeypatch.setattr(cli, "_client", lambda args: cluster)
    return history, cluster


def test_null_ordering_column_refuses_its_partition_and_the_cli_exits_2(null_history, tmp_path):
    history, cluster = null_history
    base = ["--run-id", "n1", "--source", history, "--order-by", "raft_index",
            "--cursor-store", str(tmp_path / "cursors.db")]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["plan"] + base, out=out, err=err) == cli.EXIT_DONE
    assert "partition 1: refused" in out.getvalue() and "raft_index" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["run"] + base + ["--no-throttle", "--quiet"], out=out, err=err)
    assert code == cli.EXIT_USAGE, err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert "partition 1 REFUSED (column(s) raft_index)" in err.getvalue()
    assert len(cluster.applied["0"]) == 20 and len(cluster.applied["2"]) == 20 and "1" not in cluster.applied
