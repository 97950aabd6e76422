"""Replay runner with in-memory fakes: completion, crash/resume, bad rows, pause, stop, abort."""

import json
import threading
import time

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import config
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import cursor as cursor_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import throttle as throttle_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import MemoryCursorStore, MemorySource, bad_row, make_event


def source_of(parts=3, n=50, bad=None):
    events = {}
    for p in range(parts):
        rows = []
        for i in range(1, n + 1):
            rows.append(bad_row(p, i) if bad and (p, i) in bad else make_event(p, i))
        events[str(p)] = rows
    return MemorySource(events)


def make_run(cluster, source, store, tmp_path, **options):
    cfg = {"run_id": "run-1", "batch_events": 7, "max_window": 5, "throttle": False, "commit_interval_s": 0.0,
           "audit_file": str(tmp_path / "audit.jsonl"), "metrics_textfile": str(tmp_path / "replay.prom"),
           "operator": "alice"}
    cfg.update(options)
    return rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {})


def expected_ids(source, part):
    return [e.event["event_id"] for e in source.events[part] if e.error is None]


def test_config_errors_say_what_to_fix():
    with pytest.raises(config.ReplayConfigError, match="run_id is required"):
        config.build_config({})
    with pytest.raises(config.ReplayConfigError, match="dead_letter_path"):
        config.build_config({"run_id": "r", "on_bad_row": "dead_letter"})
    with pytest.raises(config.ReplayConfigError, match="on_bad_row must be one of"):
        config.build_config({"run_id": "r", "on_bad_row": "skip"})
    with pytest.raises(config.ReplayConfigError, match="unknown replay option"):
        config.build_config({"run_id": "r", "batchsize": 3})


def test_plan_lists_events_ranges_and_estimates_without_sending(tmp_path):
    cluster, source, store = ControlPlane(), source_of(2, 40), MemoryCursorStore()
    plan = make_run(cluster, source, store, tmp_path, estimated_rate=10.0).plan()
    assert plan["partitions"]["0"]["events_remaining"] == 40
    assert plan["partitions"]["1"]["first_position"] == [1]
    assert plan["partitions"]["1"]["last_position"] == [40]
    assert plan["partitions"]["0"]["estimated_duration_s"] == 4.0
    assert plan["events_remaining"] == 80 and not plan["done"]
    assert cluster.requests == [] and store.commits == 0


def test_full_run_applies_everything_once_and_records_audit_and_metrics(tmp_path):
    cluster, source, store = ControlPlane(), source_of(3, 50), MemoryCursorStore()
    result = make_run(cluster, source, store, tmp_path).run()
    assert result["done"] and result["changed"] and result["dedup"] == "replay_session"
    for p in ("0", "1", "2"):
        assert cluster.applied[p] == expected_ids(source, p)
        assert store.load("run-1", p).status == "done"
        assert store.load("run-1", p).events_done == 50
    assert result["events_done"] == 150 and result["events_sent"] == 150
    records = [json.loads(line) for line in open(tmp_path / "audit.jsonl")]
    assert sum(r["events"] for r in records) == 150
    assert all(r["operator"] == "alice" and r["outcome"] == "acked" for r in records)
    assert records[0]["seq_first"] == 1 and records[0]["first_position"] == [1]
    kinds = [a["details"]["event"] for a in cluster.audit]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and kinds.count("partition_done") == 3
    assert all(a["kind"] == "replay" for a in cluster.audit)
    prom = (tmp_path / "replay.prom").read_text()
    assert 'replay_events_total{run_id="run-1",part_id="2"} 50' in prom
    assert 'replay_partition_lag_seconds{run_id="run-1",part_id="0"} 0.000' in prom
    assert "replay_bytes_total" in prom
    # a rerun has nothing to do and changes nothing
    again = make_run(cluster, source, store, tmp_path).run()
    assert again["done"] and not again["changed"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("sessions", [True, False])
def test_crash_between_ack_and_commit_then_resume_has_no_dup_no_loss(tmp_path, sessions):
    cluster, source, store = ControlPlane(sessions=sessions), source_of(2, 60), MemoryCursorStore()
    commits = {"n": 0}

    def crash_on_fourth(part_id, cursor):
        commits["n"] += 1
        if commits["n"] >= 4:   # from the 4th commit on the "process" is dead: nothing is committed
            raise Crash("worker killed after the ack, before the cursor commit")
    store.fail_on_commit = crash_on_fourth
    first = make_run(cluster, source, store, tmp_path, max_parallel_partitions=1,
                     use_replay_sessions=sessions).run()
    assert not first["done"]
    store.fail_on_commit = None
    second = make_run(cluster, source, store, tmp_path, use_replay_sessions=sessions).run()
    assert second["done"]
    for p in ("0", "1"):
        assert cluster.applied[p] == expected_ids(source, p)      # no loss, no duplicate, in order
    resent_dups = sum(p["duplicates"] for p in second["partitions"].values())
    # each partition had one acked batch (7 events) whose cursor commit "crashed": resent,
    # answered duplicate, applied once
    assert resent_dups == 14
    if not sessions:
        assert second["dedup"] == "event_id"
        assert any("event_id dedup" in w for w in second["warnings"])


def test_dead_letter_policy_skips_bad_rows_into_file_and_reports_position(tmp_path):
    source = source_of(2, 20, bad={(0, 5), (0, 6), (1, 20)})
    cluster, store = ControlPlane(), MemoryCursorStore()
    dl = tmp_path / "dead.jsonl"
    result = make_run(cluster, source, store, tmp_path, on_bad_row="dead_letter", dead_letter_path=str(dl)).run()
    assert result["done"] and result["stopped"] == []
    assert cluster.applied["0"] == expected_ids(source, "0") and len(cluster.applied["0"]) == 18
    assert cluster.applied["1"] == expected_ids(source, "1")
    rows = [json.loads(line) for line in open(dl)]
    assert sorted((r["part_id"], r["position"]) for r in rows) == [("0", [5]), ("0", [6]), ("1", [20])]
    assert all("not valid JSON" in r["error"] for r in rows)
    assert result["partitions"]["0"]["dead_lettered"] == 2
    assert store.load("run-1", "1").status == "done"
    assert any("dead-letter" in w for w in result["warnings"])


def test_stop_policy_stops_the_partition_at_the_bad_row_others_finish(tmp_path):
    source = source_of(3, 20, bad={(1, 8)})
    cluster, store = ControlPlane(), MemoryCursorStore()
    result = make_run(cluster, source, store, tmp_path).run()
    assert result["done"]          # every partition reached a final state
    assert cluster.applied["1"] == expected_ids(source, "1")[:7]
    report = result["stopped"][0]
    assert report["part_id"] == "1" and report["position"] == [8] and report["reason"] == "BAD_ROW"
    cursor = store.load("run-1", "1")
    assert cursor.position == (7,) and cursor_mod.parse_status(cursor.status)[0] == "stopped"
    assert cluster.applied["0"] == expected_ids(source, "0")
    assert cluster.applied["2"] == expected_ids(source, "2")


def test_oversized_event_is_a_bad_row(tmp_path):
    source = source_of(1, 5)
    source.events["0"][2].event["payload"]["blob"] = "x" * 5000
    cluster, store = ControlPlane(), MemoryCursorStore()
    result = make_run(cluster, source, store, tmp_path, max_event_bytes=2048).run()
    assert result["stopped"][0]["position"] == [3]
    assert "above max_event_bytes 2048" in result["stopped"][0]["message"]


def test_permanent_cluster_error_stops_partition_and_is_remembered(tmp_path):
    cluster, source, store = ControlPlane(), source_of(3, 30), MemoryCursorStore()
    cluster.script["h-2-000011"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_SCHEMA"}]
    result = make_run(cluster, source, store, tmp_path).run()
    assert result["done"]
    assert [r["event_id"] for r in result["stopped"]] == ["h-2-000011"]
    assert cluster.applied["2"] == expected_ids(source, "2")[:10]
    assert len(cluster.applied["0"]) == 30 and len(cluster.applied["1"]) == 30
    assert any(a["details"]["event"] == "partition_stopped" for a in cluster.audit)
    # the next slice does not resend it, and still reports why it stopped
    before = len(cluster.requests)
    again = make_run(cluster, source, store, tmp_path).run()
    assert len(cluster.requests) == before
    assert again["stopped"][0]["reason"] == "PERMANENT_SCHEMA"
    # retry_stopped resumes after the operator fixed the cause
    fixed = make_run(cluster, source, store, tmp_path, retry_stopped=True).run()
    assert fixed["done"] and fixed["stopped"] == []
    assert cluster.applied["2"] == expected_ids(source, "2")


def test_pause_flag_in_cursor_store_pauses_all_workers(tmp_path):
    cluster, source, store = ControlPlane(), source_of(2, 10), MemoryCursorStore()
    store.set_paused("run-1", True)
    result = make_run(cluster, source, store, tmp_path).run(time_budget_s=0.6)
    assert cluster.requests == [] and not result["done"]
    assert {p["status"] for p in result["partitions"].values()} == {"paused"}
    store.set_paused("run-1", False)
    result = make_run(cluster, source, store, tmp_path).run()
    assert result["done"] and len(cluster.applied["1"]) == 10


def test_pause_file_pauses(tmp_path):
    cluster, source, store = ControlPlane(), source_of(1, 10), MemoryCursorStore()
    flag = tmp_path / "PAUSE"
    flag.write_text("maintenance")
    result = make_run(cluster, source, store, tmp_path, pause_file=str(flag)).run(time_budget_s=0.5)
    assert cluster.requests == [] and result["partitions"]["0"]["status"] == "paused"


def test_stop_request_finishes_in_flight_batch_and_commits(tmp_path):
    cluster, source, store = ControlPlane(), source_of(2, 400), MemoryCursorStore()
    run = make_run(cluster, source, store, tmp_path, progress_interval_s=0.0)
    original = cluster.post_ndjson_raw
    calls = {"n": 0}

    def stop_after_some(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 10:
            threading.Thread(target=run.request_stop).start()
        return original(*a, **kw)
    cluster.post_ndjson_raw = stop_after_some
    result = run.run()
    assert result["interrupted"] and not result["done"]
    for p in ("0", "1"):
        cursor = store.load("run-1", p)
        applied = cluster.applied.get(p, [])
        # the cursor covers exactly what the cluster acknowledged
        assert cursor is None or cursor.events_done == len(applied)
    cluster.post_ndjson_raw = original
    resumed = make_run(cluster, source, store, tmp_path).run()
    assert resumed["done"]
    assert all(cluster.applied[p] == expected_ids(source, p) for p in ("0", "1"))


def test_critical_lag_aborts_the_run(tmp_path):
    cluster, source, store = ControlPlane(), source_of(1, 10_000), MemoryCursorStore()
    cfg = {"run_id": "run-1", "throttle": True, "initial_rate": 50.0}
    run = rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {"0": (5000.0, 10.0)})
    result = run.run()
    assert not result["done"]
    assert "critical lag" in result["aborted"] and "partition 0" in result["aborted"]
    assert len(cluster.applied.get("0", [])) < 10_000


def test_fatal_error_stops_the_run_with_the_reason(tmp_path):
    class Refusing(ControlPlane):
        def post_ndjson_raw(self, *a, **kw):
            raise CeptraError("POST /v1/partitions/0/append-stream failed with 403: identity lacks the ingest role",
                              status=403, route="append_stream")
    result = make_run(Refusing(), source_of(2, 5), MemoryCursorStore(), tmp_path).run()
    assert not result["done"] and "ingest role" in result["error"]


def test_only_assigned_partitions_are_replayed(tmp_path):
    cluster, source, store = ControlPlane(), source_of(4, 5), MemoryCursorStore()
    result = make_run(cluster, source, store, tmp_path, part_ids=["1", "3"]).run()
    assert sorted(cluster.applied) == ["1", "3"] and sorted(result["partitions"]) == ["1", "3"]


def test_source_failure_marks_the_partition_failed_with_the_error(tmp_path):
    class Broken(MemorySource):
        def read(self, part_id, after, after_seq, limit):
            if part_id == "1":
                raise RuntimeError("connection to the archive lost")
            return MemorySource.read(self, part_id, after, after_seq, limit)
    cluster, store = ControlPlane(), MemoryCursorStore()
    source = Broken(source_of(2, 10).events)
    result = make_run(cluster, source, store, tmp_path).run()
    assert not result["done"]
    part = result["partitions"]["1"]
    assert part["status"] == "failed" and "archive lost" in part["report"]["message"]
    assert len(cluster.applied["0"]) == 10


def test_duplicate_copies_are_skipped_counted_and_audited_never_stop(tmp_path):
    source = source_of(2, 20)
    # later copies of events 3 and 10 of partition 1 (same event_id), as the source reports them
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent

    rows = source.events["1"]
    for i in (8, 15):
        original = rows[i - 6]
        rows[i - 1] = HistoricEvent("1", (i,), i, None, 100,
                                    "duplicate row: the same event as the row at position %s"
                                    % list(original.position),
                                    raw_row={"event_id": original.event["event_id"]},
                                    duplicate_of=original.position)
    cluster, store = ControlPlane(), MemoryCursorStore()
    result = make_run(cluster, source, store, tmp_path, on_bad_row="stop").run()
    assert result["done"] and result["stopped"] == []
    assert cluster.applied["1"] == [e.event["event_id"] for e in rows if e.event is not None]
    assert len(cluster.applied["1"]) == 18 and len(cluster.applied["0"]) == 20
    assert result["partitions"]["1"]["duplicates_skipped"] == 2
    assert result["partitions"]["0"]["duplicates_skipped"] == 0
    assert result["duplicates_skipped"] == 2
    cursor = store.load("run-1", "1")
    assert cursor.status == "done" and cursor.position == (20,) and cursor.events_done == 20
    records = [json.loads(line) for line in open(tmp_path / "audit.jsonl")]
    # copies are passed in the batch of their neighbours: listed in its record, no record of their own
    assert not [r for r in records if r["outcome"] not in ("acked", "partial")]
    skipped = [(r["part_id"], c["seq"], c["position"], c["event_id"], c["duplicate_of"])
               for r in records for c in r.get("copies", [])]
    assert skipped == [("1", 8, [8], "h-1-000003", [3]), ("1", 15, [15], "h-1-000010", [10])]
    assert sum(r.get("duplicates_skipped", 0) for r in records) == 2
    assert sum(r["events"] for r in records) == 38
    # ... and cost no request, commit or record more than the copy-free partition 0
    requests = {p: len([r for r in cluster.requests if r[0] == p]) for p in ("0", "1")}
    per_part = {p: len([r for r in records if r["part_id"] == p]) for p in ("0", "1")}
    assert requests["1"] <= requests["0"] and per_part["1"] <= per_part["0"], [(r["first_position"], r["last_position"], r["events"]) for r in records]


def test_durability_wait_reads_every_readiness_variant(tmp_path):
    answers = [
        (503, {"error": "overloaded"}),                                   # not a readiness answer
        (503, {"ready": False, "partitions": [{"partition_id": 1, "reasons": [{"code": "DURABILITY_FENCE"}]}]}),
        (503, {"ready": False, "partitions": {"1": {"ready": False, "reason": "durability_fence"}}}),
        (200, {"ready": True, "partitions": [{"partition_id": 1, "ready": True}]}),
    ]

    class Client(ControlPlane):
        def _get_readyz(self, call):
            return answers.pop(0)

    client = Client()
    run = rr.ReplayRun({"run_id": "run-1", "throttle": False, "durability_wait_s": 3600}, client,
                       source_of(1, 1), MemoryCursorStore(), lag_fetch=lambda: {}, sleep=lambda s: None)
    run.progress.add("1", 1)
    assert run.wait_durability("1") is True
    assert len([c for c in client.calls if c.route == "readyz"]) == 4 and answers == []
    assert run.progress.parts["1"].status == "running"


def _sqlite_history(path, rows):
    """A SQLite file in the default historic schema holding ``rows`` (dicts)."""
    import sqlite3
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ceptra_history (part_id TEXT, raft_index BIGINT, event_time_ns BIGINT, "
                 "event_id TEXT, partition_key TEXT, schema_key TEXT, payload TEXT, flags TEXT)")
    conn.executemany("INSERT INTO ceptra_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r["part_id"], r["raft_index"], r["ts"], r["event_id"], "k", "metric_sample_v1",
                       r["payload"], r.get("flags")) for r in rows])
    conn.commit()
    conn.close()


class RecordingCluster(ControlPlane):
    """A control plane that also keeps every append-stream line it was sent."""

    def __init__(self, **kw):
        ControlPlane.__init__(self, **kw)
        self.lines = []

    def post_ndjson_raw(self, route, body, **kw):
        with self.lock:
            self.lines.extend(line for line in body.split(b"\n") if line)
        return ControlPlane.post_ndjson_raw(self, route, body, **kw)


@pytest.mark.parametrize("parallel", [1, 3])
def test_real_source_fast_path_sends_the_full_messages_in_order(tmp_path, parallel):
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source
    rows = []
    for p in range(3):
        for i in range(1, 41):
            rows.append({"part_id": str(p), "raft_index": i, "ts": 1000 + i, "event_id": "e-%d-%02d" % (p, i),
                         "payload": json.dumps({"metric": "m", "labels": {"k": "v"}, "value": i})})
    rows[5]["flags"] = '["LATE"]'                                     # general path row
    rows[7]["payload"] = '{\n  "metric": "pretty", "value": 7\n}'     # line breaks: re-serialized
    rows[50]["payload"] = '{"value": NaN}'                             # a bad row at partition 1, position 11
    path = str(tmp_path / "history.db")
    _sqlite_history(path, rows)
    spec = {"type": "sqlite", "path": path, "order_by": "raft_index"}
    cluster, store = RecordingCluster(), MemoryCursorStore()
    result = rr.ReplayRun({"run_id": "run-1", "batch_events": 16, "max_window": 8, "throttle": False,
                           "commit_interval_s": 0.0, "audit_file": str(tmp_path / "audit.jsonl"),
                           "on_bad_row": "dead_letter", "dead_letter_path": str(tmp_path / "dead.jsonl"),
                           "max_parallel_partitions": parallel, "cp_audit": False},
                          cluster, open_source(spec), store, source_factory=lambda: open_source(spec),
                          lag_fetch=lambda: {}).run()
    assert result["done"] and result["stopped"] == []
    sent = {}
    for line in cluster.lines:
        msg = json.loads(line)
        sent.setdefault(msg["part_id"], []).append(msg)
    for p in range(3):
        expected = [r for r in rows if r["part_id"] == str(p) and "NaN" not in r["payload"]]
        msgs = sent[str(p)]
        assert [m["event_id"] for m in msgs] == [r["event_id"] for r in expected]
        assert [m["replay_seq"] for m in msgs] == [i for i in range(1, 41) if (p, i) != (1, 11)]
        assert all(m["replay_session"] == "run-1/%d" % p for m in msgs)
        for m, r in zip(msgs, expected):
            assert m["payload"] == json.loads(r["payload"])
            assert m["flags"] == (["LATE", "REPLAY"] if r.get("flags") else ["REPLAY"])
            assert m["ts_ns"] == r["ts"] and m["partition_key"] == "k" and m["schema_key"] == "metric_sample_v1"
        cursor = store.load("run-1", str(p))
        assert cursor.status == "done" and cursor.position[0] == 40 and cursor.events_done == 40
    dead = [json.loads(line) for line in open(str(tmp_path / "dead.jsonl"))]
    assert [(d["part_id"], d["position"][0], d["row"]["event_id"]) for d in dead] == [("1", 11, "e-1-11")]
    assert "payload is not valid JSON" in dead[0]["error"]


def test_adaptive_reader_reads_inline_while_others_run_then_ahead_when_alone():
    pages = {None: ["a1", "a2"], "a2": ["b1"], "b1": []}

    class Ev(object):
        def __init__(self, name):
            self.position, self.seq = name, 0

    calls = []

    def read(after, after_seq):
        calls.append((after, threading.current_thread().name))
        return [Ev(x) for x in pages[after]]

    alone = [False]
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import partition, reader as reader_mod
    assert partition.AdaptivePageReader is reader_mod.AdaptivePageReader   # a partition's reader
    reader = reader_mod.AdaptivePageReader(read, None, 0, alone=lambda: alone[0])
    assert [e.position for e in reader.next_page()] == ["a1", "a2"]
    assert calls == [(None, threading.current_thread().name)]            # inline
    alone[0] = True
    assert [e.position for e in reader.next_page()] == ["b1"]            # now read ahead, from a2
    assert reader.next_page() == [] and reader.next_page() == []
    reader.close()
    assert [c[0] for c in calls] == [None, "a2", "b1"]
    assert calls[1][1] == "replay-reader"


def test_skip_and_dead_letter_counts_survive_time_slices_and_restarts(tmp_path):
    # The module replays in time slices (and a worker may die between them): the counts of
    # rows passed without sending are committed with the cursor, so the last slice reports
    # the whole run, not only what it saw itself.
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent

    source = source_of(1, 30, bad={(0, 20), (0, 25)})
    rows = source.events["0"]
    for i in (4, 15):
        original = rows[i - 3]
        rows[i - 1] = HistoricEvent("0", (i,), i, None, 100, "duplicate row", raw_row={"event_id": original.event["event_id"]},
                                    duplicate_of=original.position)
    cluster, store = ControlPlane(), MemoryCursorStore()
    commits = {"n": 0}

    def dead(part_id, cursor):
        raise Crash("worker killed")

    def die_after_the_first_skip(part_id, cursor):
        commits["n"] += 1
        if cursor.counts:      # the commit that carries the first skip lands, then the worker dies
            store.fail_on_commit = dead
    store.fail_on_commit = die_after_the_first_skip
    options = {"on_bad_row": "dead_letter", "dead_letter_path": str(tmp_path / "dead.jsonl")}
    first = make_run(cluster, source, store, tmp_path, **options).run()
    assert not first["done"] and first["duplicates_skipped"] == 1
    assert store.load("run-1", "0").counts == {"duplicates_skipped": 1}
    store.fail_on_commit = None
    plan = make_run(cluster, source, store, tmp_path, **options).plan()
    assert plan["partitions"]["0"]["duplicates_skipped"] == 1 and plan["partitions"]["0"]["dead_lettered"] == 0
    second = make_run(cluster, source, store, tmp_path, **options).run()
    assert second["done"]
    assert second["duplicates_skipped"] == 2 and second["partitions"]["0"]["dead_lettered"] == 2
    assert store.load("run-1", "0").counts == {"duplicates_skipped": 2, "dead_lettered": 2}
    assert cluster.applied["0"] == [e.event["event_id"] for e in rows if e.event is not None and e.error is None]
    third = make_run(cluster, source, store, tmp_path, **options).run()   # a rerun changes nothing
    assert third["done"] and not third["changed"] and third["duplicates_skipped"] == 2


def test_permanent_retry_expired_stops_and_is_never_resent(tmp_path):
    # contract section 4 / spec section 3: fatal, the client must not retry it
    cluster, source, store = ControlPlane(), source_of(2, 20), MemoryCursorStore()
    cluster.script["h-1-000007"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_RETRY_EXPIRED",
                                     "error": "event_id h-1-000007 was acknowledged more than client_retry_window_s ago"}]
    result = make_run(cluster, source, store, tmp_path).run()
    [report] = result["stopped"]
    assert report["reason"] == "PERMANENT_RETRY_EXPIRED" and report["seq"] == 7
    assert "must not retry it" in report["message"] and "retry_stopped" in report["message"]
    result = make_run(cluster, source, store, tmp_path, retry_stopped=True).run()
    assert result["done"] and result["stopped"] == []
    sends = [m["event_id"] for call in cluster.calls if call.route == "append_stream" for m in call.body]
    assert sends.count("h-1-000007") == 1
    part = result["partitions"]["1"]
    assert (part["events_done"], part["retry_expired"]) == (20, 1)
    assert store.load("run-1", "1").counts == {"retry_expired": 1}
    assert cluster.applied["1"] == [e.event["event_id"] for e in source.events["1"] if e.seq != 7]
    records = [json.loads(line) for line in open(tmp_path / "audit.jsonl")]
    assert [r["seq_first"] for r in records if r["outcome"] == "retry_expired"] == [7]


def throttled_run(cluster, source, store, tmp_path, **options):
    """A throttled run on a cluster with no lag (the throttle then only probes upwards)."""
    cfg = {"run_id": "run-1", "throttle": True, "initial_rate": 400.0, "max_window": 1024, "batch_events": 2000,
           "commit_interval_s": 0.0, "audit_file": str(tmp_path / "audit.jsonl"), "operator": "alice"}
    cfg.update(options)
    return rr.ReplayRun(cfg, cluster, source, store, lag_fetch=lambda: {p: (0.0, 0.0) for p in source.events})


def test_each_cursor_commit_records_the_throttle_rate(tmp_path):
    cluster, source, store = ControlPlane(), source_of(2, 60), MemoryCursorStore()
    recorded = {"0": [], "1": []}
    store.fail_on_commit = lambda part_id, cursor: recorded[part_id].append(cursor.throttle_rate)
    run = throttled_run(cluster, source, store, tmp_path)
    assert run.run()["done"]
    for p in ("0", "1"):
        rates = recorded[p]
        assert rates and store.load("run-1", p).throttle_rate == rates[-1]
        # no lag: the throttle only probes upwards (its first poll, before any send, already
        # did), and each commit carries the rate of that moment
        assert all(400.0 < a <= b for a, b in zip(rates, rates[1:] + [run.throttle.rate(p)]))
    unthrottled = MemoryCursorStore()
    make_run(ControlPlane(), source_of(1, 20), unthrottled, tmp_path).run()
    assert unthrottled.load("run-1", "0").throttle_rate is None


def test_a_new_time_slice_resumes_at_the_rate_the_cursor_recorded(tmp_path):
    # Every time slice is a new module process: it starts where the last one's throttle was
    # (its cursor's throttle_rate), not at initial_rate, unless that rate is stale or below
    # initial_rate (the starting floor, e.g. a rate an earlier run's max_rate held down).
    source = source_of(3, 3000)
    store = MemoryCursorStore()
    now = time.time()
    store.commit("run-1", "0", cursor_mod.Cursor((1000,), 1000, 1000, 0, "running", now - 5, None, 20000.0))
    store.commit("run-1", "1", cursor_mod.Cursor((1000,), 1000, 1000, 0, "running",
                                                 now - rr.RATE_RESUME_MAX_AGE_S - 60, None, 20000.0))
    store.commit("run-1", "2", cursor_mod.Cursor((1000,), 1000, 1000, 0, "running", now - 5, None, 100.0))
    cluster = ControlPlane()
    run = throttled_run(cluster, source, store, tmp_path)
    assert run.run()["done"]
    first = {}
    for part_id, lines in cluster.requests:
        first.setdefault(part_id, len(lines))
    # the first request follows the rate after one lag poll (at most increase_factor above it)
    grown = throttle_mod.ThrottleSettings().increase_factor
    assert 20000.0 * throttle_mod.BATCH_SECONDS <= first["0"] <= 20000.0 * grown * throttle_mod.BATCH_SECONDS
    for part_id in ("1", "2"):    # stale, and below initial_rate: both start at initial_rate
        assert 400.0 * throttle_mod.BATCH_SECONDS <= first[part_id] <= 400.0 * grown * throttle_mod.BATCH_SECONDS
    for part_id in ("0", "1", "2"):
        assert cluster.applied[part_id] == expected_ids(source, part_id)[1000:]
