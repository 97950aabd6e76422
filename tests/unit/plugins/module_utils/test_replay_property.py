# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property (issue 10): a replay cut anywhere, any number of times, ends exactly as a replay
that was never cut.

For SQLite and PostgreSQL x {raft_index, event_time} x {unique keys, repeated keys, stored
copies}, hypothesis draws a seeded random table of two partitions (with bad rows), a page
size, a request window, a commit interval, a bad-row policy and a schedule of cuts:

- time slices that end after some requests (the worker finishes its request, commits and
  returns, as a module call does at the end of its time budget);
- kill -9s at a cursor commit: nothing is committed from that commit on, the worker's memory
  is gone, the cluster keeps every event it acknowledged; some are aimed at commits inside
  or at the end of a group of rows sharing an ordering key (rank >= 2).

Then one run finishes the replay. The cluster here deduplicates by replay_seq only (the
contract's cluster also drops a known event_id): so an event the worker sent twice under two
seqs would be applied twice and seen. Compared with the uncut run: the events applied, in
order, each once and under the same replay_seq; the cursors (status and stop report,
events_done, seq, duplicates_skipped, dead_lettered, position); the dead-lettered rows (part,
seq, position); the skipped copies (part, seq, position). For tables without repeated keys
the applied events are also checked against the table itself: every distinct valid event.

Runtime: about 20-40 s for the 12 cases on the 2-core development machine (derandomized:
the same examples on every run).
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

from ..test_support.control_plane import ControlPlane
from ..test_support.historic_tables import Backend, make_row
from ..test_support.replay_fakes import MemoryCursorStore

PARTS = ("0", "1")
BASE_TS = 1_700_000_000_000_000_000
KINDS = ("unique", "repeated", "copies")
EXAMPLES = {"sqlite": 10, "postgresql": 6}
_tables = itertools.count()


def random_history(seed, kind, per_part):
    """Rows of a seeded random table; ``kind``: unique keys, repeated keys (raft_index and
    event times shared by different events, and copies of an event with another payload), or
    stored copies (exact copies of earlier rows, under a new raft_index or the same one)."""
    rng = random.Random(seed)
    rows = []
    for p, n in zip(PARTS, per_part):
        mine = []
        for i in range(n):
            if mine and kind != "unique" and rng.random() < 0.25:
                original = rng.choice(mine)
                copy = dict(original)
                if kind == "repeated":
                    copy["payload"] = json.dumps({"metric": "m", "labels": {}, "value": -i})
                    copy["raft_index"] = original["raft_index"] if rng.random() < 0.5 else rng.randrange(max(1, n // 2))
                else:
                    copy["raft_index"] = original["raft_index"] if rng.random() < 0.3 else 10_000 + i
                mine.append(copy)
                continue
            if kind == "repeated":
                raft, ts = rng.randrange(max(1, n // 2)), BASE_TS + rng.randrange(max(1, n // 3))
            else:
                raft, ts = None, BASE_TS + rng.randrange(2 * n)
            row = make_row(p, raft, ts, "e-%s-%03d" % (p, i), payload={"metric": "m", "labels": {}, "value": i},
                           key="k%d" % (i % 5))
            if rng.random() < 0.06:
                row["payload"] = "{not json"
            mine.append(row)
        if kind != "repeated":     # unique raft indexes, in another order than the event times
            originals = [r for r in mine if r["raft_index"] is None]
            for index, row in zip(rng.sample(range(len(originals)), len(originals)), originals):
                row["raft_index"] = index
            for row in mine:
                if row["raft_index"] is None:
                    row["raft_index"] = next(r["raft_index"] for r in mine if r["event_id"] == row["event_id"]
                                             and r["raft_index"] is not None)
        rows.extend(mine)
    rng.shuffle(rows)
    return rows


class Cluster(ControlPlane):
    """The fake cluster with replay_seq dedup only; records the seq every event was applied with."""

    def __init__(self):
        super().__init__(partitions=len(PARTS), event_id_dedup=False, window=3)
        self.seqs = {}
        self.on_request = None

    def _post_append_stream(self, call):
        if self.on_request is not None:
            self.on_request()
        return super()._post_append_stream(call)

    def _append(self, part_id, msg):
        answer = super()._append(part_id, msg)
        if answer.get("status") == "Healthy" and not answer.get("duplicate"):
            self.seqs.setdefault((part_id, msg["event_id"]), []).append(msg["replay_seq"])
        return answer


class Killed(Exception):
    """The worker was killed (kill -9): nothing it would do from here on happens."""


def replay(spec, cluster, store, files, options, cut=None):
    """One worker process: a run until done, or until ``cut`` = (kind, n) ends it."""
    source = open_source(spec)
    try:
        cfg = {"run_id": "prop", "throttle": False, "cp_audit": False, "max_parallel_partitions": 2,
               "audit_file": files["audit"], "dead_letter_path": files["dead"]}
        cfg.update(options)
        run = rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {})
        counter = itertools.count(1)
        cluster.on_request, store.fail_on_commit = None, None
        if cut is not None:
            kind, n = cut
            if kind == "slice":
                def on_request():
                    if next(counter) == n:
                        run.request_stop()
                cluster.on_request = on_request
            else:
                state = {"dead": False}

                def on_commit(part_id, cursor):
                    if state["dead"]:
                        raise Killed()
                    count = next(counter)
                    in_group = cursor.position is not None and cursor.position[-1] >= 2
                    if count >= n and (kind == "kill" or in_group):
                        state["dead"] = True
                        run.request_stop()
                        raise Killed()
                store.fail_on_commit = on_commit
        return run.run()
    finally:
        cluster.on_request, store.fail_on_commit = None, None
        source.close()


def outcome(cluster, store, files):
    """What a replay left behind, in a form two replays can be compared in."""
    def lines(path):
        try:
            with open(path) as handle:
                return [json.loads(line) for line in handle]
        except FileNotFoundError:
            return []
    cursors = {}
    for p in PARTS:
        c = store.load("prop", p)
        if c is not None:
            cursors[p] = (c.status, c.seq, c.events_done, c.counts, c.position)
    return {
        "applied": {p: cluster.applied.get(p, []) for p in PARTS},
        "seqs": dict(cluster.seqs),
        "cursors": cursors,
        "dead": sorted({(r["part_id"], r.get("seq"), tuple(r["position"])) for r in lines(files["dead"])}),
        "copies": sorted({(r["part_id"], c["seq"], tuple(c["position"]))
                          for r in lines(files["audit"]) for c in r.get("copies", [])}),
    }


def distinct_valid_events(rows):
    """(part_id, event_id) of every event with a valid first copy (tables without repeated keys)."""
    return {(r["part_id"], r["event_id"]) for r in rows if r["payload"] != "{not json"}


CUTS = st.lists(st.tuples(st.sampled_from(["slice", "kill", "kill_in_group"]), st.integers(1, 6)),
                min_size=1, max_size=6)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    b = Backend(request.param, tmp_path, request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None)
    yield b
    b.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order_by", ["raft_index", "event_time"])
def test_cut_replay_equals_the_uncut_replay(backend, tmp_path, order_by, kind):
    @settings(max_examples=EXAMPLES[backend.kind], deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(seed=st.integers(0, 2 ** 32 - 1), per_part=st.tuples(st.integers(0, 30), st.integers(0, 30)),
           batch_events=st.integers(1, 6), max_window=st.integers(1, 4), commit_interval_s=st.sampled_from([0.0, 30.0]),
           on_bad_row=st.sampled_from(["dead_letter", "stop"]), cuts=CUTS)
    def check(seed, per_part, batch_events, max_window, commit_interval_s, on_bad_row, cuts):
        rows = random_history(seed, kind, per_part)
        name = "h_%d" % next(_tables)
        backend.create(rows, name=name)
        spec = backend.spec(table=backend.table(name), order_by=order_by)

        def files(label):
            return {"audit": str(tmp_path / ("%s-%s-audit.jsonl" % (name, label))),
                    "dead": str(tmp_path / ("%s-%s-dead.jsonl" % (name, label)))}

        reference_files = files("uncut")
        reference_cluster, reference_store = Cluster(), MemoryCursorStore()
        result = replay(spec, reference_cluster, reference_store, reference_files,
                        {"on_bad_row": on_bad_row, "batch_events": 1000})
        assert result["done"] and not result.get("refused")
        expected = outcome(reference_cluster, reference_store, reference_files)
        assert all(len(seqs) == 1 for seqs in expected["seqs"].values())      # nothing applied twice
        if kind != "repeated" and on_bad_row == "dead_letter":
            assert set(expected["seqs"]) == distinct_valid_events(rows)        # nothing lost

        cut_files = files("cut")
        cluster, store = Cluster(), MemoryCursorStore()
        options = {"on_bad_row": on_bad_row, "batch_events": batch_events, "max_window": max_window,
                   "commit_interval_s": commit_interval_s}
        for cut in cuts:
            replay(spec, cluster, store, cut_files, options, cut)
        final = replay(spec, cluster, store, cut_files, options)
        assert final["done"]
        got = outcome(cluster, store, cut_files)
        assert got == expected
        totals = {p: final["partitions"][p] for p in final["partitions"]}
        assert {p: (t["events_done"], t["duplicates_skipped"], t["dead_lettered"]) for p, t in totals.items()} == \
            {p: (result["partitions"][p]["events_done"], result["partitions"][p]["duplicates_skipped"],
                 result["partitions"][p]["dead_lettered"]) for p in totals}

    check()
