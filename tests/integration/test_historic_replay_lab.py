"""The replay engine end to end against the CEPtra lab.

- a historic set replays completely through the module (until-loop of time slices) while
  live events flow: the lab's applied count equals distinct historic + live events;
- a permanent refusal of one event stops that partition with a report naming it; the
  other partitions finish;
- the CLI worker killed with SIGKILL at random points (>= 20 kills across SQLite and
  PostgreSQL sources), then resumed: nothing applied twice, nothing missing (applied counts
  and snapshot digests equal a clean reference run);
- SIGTERM finishes the in-flight batch, commits and exits with a resume hint.
"""

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from .replay_lab import (
    START_NS, applied_counts, digests, drop_postgres, history_rows, lab_json, write_postgres, write_sqlite)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
CLI = "ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli"


def cli_env(lab):
    return dict(os.environ, PYTHONPATH=COLLECTIONS, CEPTRA_URL=lab.url, CEPTRA_TOKEN=lab.tokens["operator"])


def cli_cmd(run_id, source_args, cursor_args, *extra):
    return [sys.executable, "-m", CLI, "run", "--run-id", run_id, "--order-by", "raft_index",
            "--quiet"] + source_args + cursor_args + list(extra)


SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
GAMING = os.path.join(SHARED, "reference/bundles/gaming_cheat_detection.yaml")


def seed_with_copies(path, partitions, per_partition, seed):
    """A seeded SQLite history holding 5 % later copies: (rows, distinct events)."""
    from ceptra_lab.traffic import seed_history

    rows = seed_history("sqlite:" + path, partitions=partitions, events_per_partition=per_partition,
                        bundle=GAMING, start_ns=START_NS, duplicate_ratio=0.05, seed=seed)
    conn = sqlite3.connect(path)
    distinct = conn.execute("SELECT COUNT(DISTINCT event_id) FROM ceptra_history").fetchone()[0]
    conn.close()
    return rows, distinct


def test_module_replays_everything_while_live_traffic_flows(lab_factory, run_target, tmp_path):
    from ceptra_lab.traffic import live

    lab = lab_factory(partitions=4, test_mode=True)
    history = str(tmp_path / "history.db")
    write_sqlite(history, history_rows(4, 1500, START_NS))
    live_totals = {}
    feeder = threading.Thread(target=lambda: live_totals.update(
        live(lab.url, lab.tokens["ingest"], rate=300, duration=4, partitions=4, out=io.StringIO())))
    feeder.start()
    result = run_target("historic_replay_live", {
        "ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"], "history": history,
        "cursors": str(tmp_path / "cursors.db"), "run_id": "live-mix", "audit": str(tmp_path / "audit.jsonl"),
        "prom": str(tmp_path / "replay.prom")})
    feeder.join()
    assert result.rc == 0, result.stdout + result.stderr
    plan = result.results["plan"]
    assert plan["changed"] and plan["plan"]["events_remaining"] == 6000
    replay = result.results["replay"]
    assert replay["done"] and replay["events_done"] == 6000 and replay["stopped"] == []
    assert result.results["again"]["changed"] is False
    assert result.results["info"]["done"] and result.results["info"]["events_remaining"] == 0
    assert live_totals["refused"] == 0 and live_totals["healthy"] > 0
    counts = applied_counts(lab)
    assert sum(counts.values()) == 6000 + live_totals["healthy"]
    audit = [json.loads(line) for line in open(tmp_path / "audit.jsonl")]
    assert sum(r["events"] for r in audit if r["outcome"] in ("acked", "partial")) == 6000
    assert 'replay_events_total{run_id="live-mix",part_id="3"} 1500' in (tmp_path / "replay.prom").read_text()
    cp = lab_json(lab, "/v1/audit?kind=replay")["records"]
    assert {"run_start", "run_end", "partition_done"} <= {r["details"]["event"] for r in cp}


def test_copies_in_the_history_are_applied_once_while_live_traffic_flows(lab_factory, tmp_path):
    """Exactly once with copies in the history: applied == DISTINCT historic events + live events,
    with a historic set holding 5 % later copies (``ceptra-lab seed-history --duplicate-ratio 0.05``)."""
    from ceptra_lab.traffic import live

    lab = lab_factory(partitions=4, test_mode=True)
    history = str(tmp_path / "history.db")
    rows, distinct = seed_with_copies(history, 4, 1500, seed=11)
    copies = rows - distinct
    assert rows == 6000 and copies > 100          # the set really holds copies
    live_totals = {}
    feeder = threading.Thread(target=lambda: live_totals.update(
        live(lab.url, lab.tokens["ingest"], rate=300, duration=3, partitions=4, out=io.StringIO())))
    feeder.start()
    proc = subprocess.run(cli_cmd("copies", ["--source", history], ["--cursor-store", str(tmp_path / "c.db")],
                                  "--no-throttle", "--json", "--on-bad-row", "stop"),
                          env=cli_env(lab), capture_output=True, text=True, check=False, timeout=180)
    feeder.join()
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["done"] and result["stopped"] == []
    assert result["duplicates_skipped"] == copies and result["events_sent"] == distinct
    assert sum(p["duplicates_skipped"] for p in result["partitions"].values()) == copies
    assert live_totals["refused"] == 0 and live_totals["healthy"] > 0
    assert sum(applied_counts(lab).values()) == distinct + live_totals["healthy"]


def test_skipped_copies_are_counted_over_every_time_slice(lab_factory, run_target, tmp_path):
    """The module replays in time slices; the count of copies skipped is kept with the cursor,
    so the final round (and a rerun) reports the whole run's copies, not only its own."""
    lab = lab_factory(partitions=2, test_mode=True)
    history = str(tmp_path / "history.db")
    rows, distinct = seed_with_copies(history, 2, 800, seed=5)
    copies = rows - distinct
    assert copies > 20
    result = run_target("historic_replay_slices", {
        "ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"], "history": history,
        "cursors": str(tmp_path / "cursors.db"), "run_id": "copies-in-slices"})
    assert result.rc == 0, result.stdout + result.stderr
    replay = result.results["replay"]
    assert replay["attempts"] > 2                        # really several slices
    assert replay["done"] and replay["events_done"] == rows
    assert replay["events_sent"] < distinct              # the last slice sent only part of the set
    assert replay["duplicates_skipped"] == copies
    assert sum(p["duplicates_skipped"] for p in replay["partitions"].values()) == copies
    again = result.results["again"]
    assert again["changed"] is False and again["duplicates_skipped"] == copies
    assert sum(applied_counts(lab).values()) == distinct


@pytest.mark.parametrize("order_by", ["raft_index", "event_time"])
def test_find_copies_false_sends_copies_and_the_lab_applies_each_event_once(lab_factory, tmp_path, order_by):
    """``--no-find-copies`` keeps its promise: every copy is sent (in both orders), the lab's
    event_id dedup answers it ``duplicate: true`` within client_retry_window_s and applies
    nothing; the state equals a reference that replayed with the copies skipped."""
    history = str(tmp_path / "history.db")
    rows, distinct = seed_with_copies(history, 2, 500, seed=7)
    copies = rows - distinct
    assert copies > 20
    results, labs = {}, {}
    for label, extra in (("skipped", []), ("sent", ["--no-find-copies"])):
        labs[label] = lab_factory(partitions=2, test_mode=True)
        cmd = cli_cmd("nf-" + label, ["--source", history], ["--cursor-store", str(tmp_path / ("%s.db" % label))],
                      "--no-throttle", "--json", *extra)
        cmd[cmd.index("--order-by") + 1] = order_by
        proc = subprocess.run(cmd, env=cli_env(labs[label]), capture_output=True, text=True, check=False, timeout=180)
        assert proc.returncode == 0, proc.stderr
        results[label] = json.loads(proc.stdout)
    sent = results["sent"]
    assert sent["duplicates_skipped"] == 0 and sent["events_sent"] == rows
    assert sum(p["duplicates"] for p in sent["partitions"].values()) == copies
    assert results["skipped"]["duplicates_skipped"] == copies
    for label in labs:
        assert sum(applied_counts(labs[label]).values()) == distinct, label
    assert digests(labs["sent"], ["0", "1"]) == digests(labs["skipped"], ["0", "1"])


def _poison_run(lab_factory, tmp_path):
    lab = lab_factory(partitions=3, test_mode=True)
    future = time.time_ns() + 3600 * 1_000_000_000      # beyond max_future_skew_ms: refused permanently
    bad = ("1", 250, future, "h-1-poison", "key-1", "metric_sample_v1", json.dumps({"value": 1.0}), None)
    rows = [r for r in history_rows(3, 500, START_NS) if not (r[0] == "1" and r[1] == 250)] + [bad]
    history = str(tmp_path / "history.db")
    write_sqlite(history, rows)
    proc = subprocess.run(cli_cmd("poison", ["--source", history], ["--cursor-store", str(tmp_path / "c.db")],
                                  "--no-throttle", "--json"),
                          env=cli_env(lab), capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 4, proc.stderr
    return json.loads(proc.stdout), proc.stderr, applied_counts(lab)


def test_permanent_error_stops_only_that_partition(lab_factory, tmp_path):
    result, stderr, counts = _poison_run(lab_factory, tmp_path)
    report = result["stopped"][0]
    assert report["part_id"] == "1" and report["event_id"] == "h-1-poison" and report["seq"] == 250
    assert report["reason"] == "FUTURE_SKEW" and report["position"] == [250, report["position"][1]]
    assert "partition 1 STOPPED at event h-1-poison" in stderr
    assert counts["0"] == 500 and counts["2"] == 500
    assert result["partitions"]["0"]["status"] == "done" and result["partitions"]["2"]["status"] == "done"
    # the worker sent nothing after the request holding the refused event, and reports any
    # event the cluster committed behind it in that request
    assert counts["1"] == 249 + len(report.get("committed_after", []))
    assert result["partitions"]["1"]["events_done"] == 249


def test_nothing_after_the_refused_event_is_applied(lab_factory, tmp_path):
    result, dummy, counts = _poison_run(lab_factory, tmp_path)
    report = result["stopped"][0]
    assert report.get("committed_after", []) == []
    assert counts["1"] == 249
    assert report["event_id"] == "h-1-poison" and report["part_id"] == "1" and report["position"][0] == 250


def test_lab_answers_later_events_of_a_refused_session_transient(lab_factory):
    """The lab's (assumed) rule: after a permanent refusal of a replay event, later events of
    that session in the same append-stream request are TRANSIENT_RETRY and not applied;
    other sessions and plain events in the request are appended, the next request is clean."""
    from ceptra_lab.testing import append_stream, sample_event

    lab = lab_factory(partitions=1, test_mode=True)
    now = time.time_ns()

    def ev(n, session, ts=None):
        extra = {"replay_session": session, "replay_seq": n, "flags": ["REPLAY"]} if session else {}
        return sample_event("e-%s-%d" % (session, n), ts_ns=ts or now - 1000, part_id="0", **extra)

    future = now + 3600 * 1_000_000_000
    answers = append_stream(lab, "0", [ev(1, "a"), ev(2, "a", ts=future), ev(3, "a"), ev(1, "b"), ev(4, "a"),
                                       ev(9, None)])
    assert [a["status"] for a in answers] == ["Healthy", "PermanentDurability", "TransientBackpressure",
                                              "Healthy", "TransientBackpressure", "Healthy"]
    assert answers[2]["cep_status_reason"] == "TRANSIENT_RETRY" and "earlier event" in answers[2]["error"]
    assert applied_counts(lab) == {"0": 3}
    again = append_stream(lab, "0", [ev(3, "a"), ev(4, "a")])
    assert [a["status"] for a in again] == ["Healthy", "Healthy"]
    assert applied_counts(lab) == {"0": 5}


def _reference_run(lab_factory, tmp_path, source_args, part_ids):
    ref = lab_factory(partitions=4, test_mode=True)
    proc = subprocess.run(cli_cmd("reference", source_args, ["--cursor-store", str(tmp_path / "ref-cursors.db")],
                                  "--no-throttle"), env=cli_env(ref), capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return applied_counts(ref), digests(ref, part_ids)


def _kill_and_resume(lab, source_args, cursor_args, kills, rng):
    """Start the CLI, SIGKILL it at a random point, repeat ``kills`` times, then finish."""
    cmd = cli_cmd("killed", source_args, cursor_args, "--initial-rate", "700", "--max-rate", "700")
    done_kills = 0
    while done_kills < kills:
        proc = subprocess.Popen(cmd, env=cli_env(lab), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.0))
        if proc.poll() is not None:
            raise AssertionError("the run finished before kill %d; make the data set larger: %s"
                                 % (done_kills + 1, proc.stderr.read().decode()[-2000:]))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        done_kills += 1
    final = subprocess.run(cmd + ["--no-throttle"], env=cli_env(lab), capture_output=True, text=True, check=False, timeout=300)
    assert final.returncode == 0, final.stderr
    return done_kills


def _check_against_reference(lab, reference, part_ids, per_part):
    ref_counts, ref_digests = reference
    counts = applied_counts(lab)
    assert counts == ref_counts == {p: per_part for p in part_ids}     # none twice, none missing
    assert digests(lab, part_ids) == ref_digests
    sessions = {}
    for p in lab_json(lab, "/v1/state")["partitions"]:
        sessions.update(p["replay_sessions"])
    assert {s: v["last_seq"] for s, v in sessions.items()} == {"killed/%s" % p: per_part for p in part_ids}


PER_PART = 8000
PARTS = ["0", "1", "2", "3"]


@pytest.mark.slow
def test_kill_9_at_random_points_sqlite_source(lab_factory, tmp_path):
    history = str(tmp_path / "history.db")
    write_sqlite(history, history_rows(4, PER_PART, START_NS))
    source_args = ["--source", history]
    reference = _reference_run(lab_factory, tmp_path, source_args, PARTS)
    lab = lab_factory(partitions=4, test_mode=True)
    kills = _kill_and_resume(lab, source_args, ["--cursor-store", str(tmp_path / "cursors.db")], 10,
                             random.Random(42))
    assert kills == 10
    _check_against_reference(lab, reference, PARTS, PER_PART)


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_at_random_points_postgresql_source_and_cursor_store(lab_factory, tmp_path, pg_dsn):
    suffix = uuid.uuid4().hex[:10]
    table, cursors = "replay_hist_%s" % suffix, "replay_cur_%s" % suffix
    write_postgres(pg_dsn, table, history_rows(4, PER_PART, START_NS))
    try:
        source_args = ["--source-dsn", pg_dsn, "--table", table]
        reference = _reference_run(lab_factory, tmp_path, source_args, PARTS)
        lab = lab_factory(partitions=4, test_mode=True)
        kills = _kill_and_resume(lab, source_args, ["--cursor-dsn", pg_dsn, "--cursor-table", cursors], 10,
                                 random.Random(7))
        assert kills == 10
        _check_against_reference(lab, reference, PARTS, PER_PART)
    finally:
        drop_postgres(pg_dsn, table, cursors)


def test_sigterm_commits_and_prints_resume_hint(lab_factory, tmp_path):
    lab = lab_factory(partitions=2, test_mode=True)
    history = str(tmp_path / "history.db")
    write_sqlite(history, history_rows(2, 6000, START_NS))
    cursors = str(tmp_path / "c.db")
    cmd = cli_cmd("term", ["--source", history], ["--cursor-store", cursors], "--initial-rate", "500",
                  "--max-rate", "500")
    proc = subprocess.Popen(cmd, env=cli_env(lab), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait for real progress (events committed in the lab), not a fixed time: loaded machines are slow
    deadline = time.monotonic() + 90
    while sum(p["commit_index"] for p in lab_json(lab, "/v1/state")["partitions"]) == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError("no event reached the lab before SIGTERM: %s" % err[-2000:])
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "resume with:" in err and "--run-id term" in err
    counts = applied_counts(lab)
    conn = sqlite3.connect(cursors)
    done = dict(conn.execute("SELECT part_id, events_done FROM replay_cursors WHERE run_id = 'term'").fetchall())
    conn.close()
    assert 0 < sum(counts.values()) < 12000, err
    assert {p: done.get(p, 0) for p in counts} == counts     # cursor == exactly what the lab applied
    final = subprocess.run(cmd + ["--no-throttle"], env=cli_env(lab), capture_output=True, text=True, check=False, timeout=120)
    assert final.returncode == 0, final.stderr
    assert applied_counts(lab) == {"0": 6000, "1": 6000}
