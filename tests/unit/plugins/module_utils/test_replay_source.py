# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Historic sources: ordering, keyset paging, filters, column mapping, bad rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import rows as rows_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sql as sql_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent, SourceError, dead_letter_write
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

from ..test_support.historic_tables import Backend, make_row


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    b = Backend(request.param, tmp_path, request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None)
    yield b
    b.close()


def read_all(src, part_id, limit, after=None, after_seq=0):
    """Read a partition to the end page by page, as the runner does."""
    out = []
    while True:
        page = src.read(part_id, after, after_seq, limit)
        assert len(page) <= limit or any(e.error for e in page)
        if not page:
            return out
        out.extend(page)
        after, after_seq = page[-1].position, page[-1].seq


def shuffled_rows(n_parts=3, per_part=60, seed=7):
    """Rows inserted in random order, with many equal event times (ties broken by event_id)."""
    rng = random.Random(seed)
    rows = []
    for p in range(n_parts):
        for i in range(per_part):
            # raft order and time order differ on purpose: raft_index is a shuffle of i.
            rows.append(make_row(str(p), (i * 37) % per_part, 1000 + i // 4, "e-%d-%03d" % (p, rng.randrange(1000)) + "-%d" % i))
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("order_by", ["event_time", "raft_index"])
def test_keyset_pages_reproduce_the_full_ordered_stream(backend, order_by):
    rows = shuffled_rows()
    backend.create(rows)
    src = backend.open(order_by=order_by)
    assert src.partitions() == ["0", "1", "2"]
    for part in ("0", "1", "2"):
        mine = [r for r in rows if r["part_id"] == part]
        if order_by == "raft_index":
            expected = [r["event_id"] for r in sorted(mine, key=lambda r: r["raft_index"])]
        else:
            expected = [r["event_id"] for r in sorted(mine, key=lambda r: (r["event_time_ns"], r["event_id"]))]
        for limit in (1, 7, 1000):
            events = read_all(src, part, limit)
            assert [e.event["event_id"] for e in events] == expected
            assert [e.seq for e in events] == list(range(1, len(expected) + 1))
            assert all(e.error is None and e.part_id == part for e in events)
        # Resuming from the middle continues the numbering and the order exactly.
        events = read_all(src, part, 1000)
        middle = events[24]
        tail = read_all(src, part, 5, after=middle.position, after_seq=middle.seq)
        assert [e.event["event_id"] for e in tail] == expected[25:]
        assert [e.seq for e in tail] == list(range(26, len(expected) + 1))
        plan = src.plan(part)
        assert plan["events"] == len(expected)
        assert plan["first_position"] == events[0].position
        assert plan["last_position"] == events[-1].position
        assert plan["min_ts_ns"] == 1000 and plan["max_ts_ns"] == 1000 + 59 // 4
        assert src.plan(part, after=middle.position)["events"] == len(expected) - 25


def test_row_becomes_the_append_message(backend):
    backend.create([make_row("3", 5, 1732600000000000000, "h-3-1", payload={"metric": "x", "value": 2.5},
                             flags='["LATE"]', key="player-17"),
                    make_row("3", 6, 1732600000000000001, "h-3-2")])
    events = read_all(backend.open(), "3", 10)
    assert events[0].event == {
        "event_id": "h-3-1", "part_id": "3", "partition_key": "player-17", "ts_ns": 1732600000000000000,
        "schema_key": "metric_sample_v1", "payload": {"metric": "x", "value": 2.5}, "flags": ["LATE", "REPLAY"]}
    assert events[1].event["flags"] == ["REPLAY"]
    assert events[0].raw_size > 0 and events[0].raw_row is None


def test_window_and_partition_filters(backend):
    rows = [make_row(str(p), i, 100 + i, "e-%d-%02d" % (p, i)) for p in range(4) for i in range(20)]
    backend.create(rows)
    src = backend.open(window={"start_ns": 105, "end_ns": 112}, part_ids=[3, "1"])
    assert src.partitions() == ["1", "3"]
    events = read_all(src, "3", 3)
    # Start inclusive, end exclusive.
    assert [e.event["ts_ns"] for e in events] == list(range(105, 112))
    plan = src.plan("3")
    assert (plan["events"], plan["min_ts_ns"], plan["max_ts_ns"]) == (7, 105, 111)
    assert backend.open(window={"end_ns": 103}).plan("0")["events"] == 3
    assert backend.open(window={"start_ns": 118}).plan("0")["events"] == 2


def test_column_mapping_on_a_renamed_table(backend):
    mapping = {"part_id": "pid", "raft_index": "idx", "event_time_ns": "t_ns", "event_id": "eid",
               "partition_key": "pkey", "schema_key": "skey", "payload": "body", "flags": "tags"}
    rows = [make_row("0", 10 - i, 500 + i, "r-%d" % i) for i in range(10)]
    backend.create(rows, name="archived_events", columns=mapping)
    src = backend.open(table=backend.table("archived_events"), columns=mapping, order_by="raft_index")
    events = read_all(src, "0", 4)
    assert [e.event["event_id"] for e in events] == ["r-%d" % i for i in range(9, -1, -1)]
    assert events[0].event["ts_ns"] == 509
    with pytest.raises(SourceError, match="not readable"):
        backend.open(table=backend.table("archived_events"))   # default names do not exist there


def test_mapping_optional_columns_to_null(backend):
    backend.create([make_row("0", None, 10 + i, "n-%d" % i, flags='["X"]') for i in range(3)])
    src = backend.open(columns={"raft_index": None, "flags": None})
    assert [e.event["flags"] for e in read_all(src, "0", 2)] == [["REPLAY"]] * 3
    with pytest.raises(SourceError, match="order_by raft_index needs a raft_index column"):
        backend.open(columns={"raft_index": None}, order_by="raft_index")
    with pytest.raises(SourceError, match="cannot be mapped to null"):
        backend.open(columns={"event_id": None})


@pytest.mark.parametrize("spec, message", [
    ({"table": "x; DROP TABLE y"}, "table 'x; DROP TABLE y' is not a valid SQL identifier"),
    ({"columns": {"event_id": "id\" ; DROP TABLE y; --"}}, "column for event_id .* is not a valid SQL identifier"),
    ({"table": "a.b.c"}, "not a valid SQL identifier"),
    ({"columns": {"evil": "x"}}, "unknown logical column"),
    ({"order_by": "random()"}, "order_by must be"),
    ({"window": {"start_ns": "soon"}}, "window.start_ns must be an integer"),
    ({"window": {"start_ns": 10, "end_ns": 5}}, "start_ns must be below"),
    ({"max_event_bytes": 10}, "max_event_bytes"),
    ({"find_copies": "yes"}, "find_copies must be true or false"),
])
def test_bad_spec_is_refused_with_a_clear_message(backend, spec, message):
    backend.create([make_row("0", 1, 1, "a")])
    backend.execute("CREATE TABLE %s (v INTEGER)" % backend.table("y"))
    with pytest.raises(SourceError, match=message):
        backend.open(**spec)
    backend.execute("SELECT v FROM %s" % backend.table("y"))   # still there


def test_source_spec_errors_without_a_database(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source({"type": "sqlite", "path": str(tmp_path / "missing.db")})
    with pytest.raises(SourceError, match="type must be"):
        open_source({"type": "mysql", "path": "x"})
    with pytest.raises(SourceError, match="needs 'dsn'"):
        open_source({"type": "postgresql"})


def test_psycopg_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(sql_mod, "psycopg", None)
    with pytest.raises(SourceError, match=r"pip install 'psycopg\[binary\]'"):
        open_source({"type": "postgresql", "dsn": "dbname=never-connected"})


def test_malformed_rows_become_errors_with_positions(backend):
    huge = {"metric": "m", "blob": "x" * 5000}
    rows = [
        make_row("0", 1, 10, "ok-1"),
        dict(make_row("0", 2, 11, "bad-json"), payload="{not json"),
        dict(make_row("0", 3, 12, "array"), payload="[1, 2]"),
        make_row("0", 4, 13, ""),
        dict(make_row("0", 5, 14, "no-id"), event_id=None),
        dict(make_row("0", 6, None, "no-time")),
        make_row("0", 7, 16, "too-big", payload=huge),
        make_row("0", 8, 17, "bad-flags", flags='{"a": 1}'),
        dict(make_row("0", 9, 18, "no-key"), partition_key=None),
        make_row("0", 10, 19, "ok-2"),
    ]
    backend.create(rows, loose=True)
    src = backend.open(order_by="raft_index", max_event_bytes=4096)
    events = read_all(src, "0", 3)
    assert [e.seq for e in events] == list(range(1, 11))
    assert [e.position[0] for e in events] == list(range(1, 11))
    errors = {e.position[0]: e.error for e in events if e.error}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "payload is not valid JSON" in errors[2]
    assert "payload must be a JSON object, got an array" in errors[3]
    assert errors[4] == "empty event_id"
    assert errors[5] == "missing event_id"
    assert errors[6] == "event_time_ns is NULL"
    assert "above max_event_bytes 4096" in errors[7]
    assert "flags must be a JSON array of strings" in errors[8]
    assert errors[9] == "partition_key is NULL"
    for e in events:
        assert (e.event is None) == (e.error is not None)
        if e.error:
            assert e.raw_row["part_id"] == "0" and e.raw_row["raft_index"] == e.position[0]
    assert events[1].raw_row["payload"] == "{not json"
    assert [e.event["event_id"] for e in events if e.event] == ["ok-1", "ok-2"]


def test_null_ordering_key_refuses_the_partition(backend):
    backend.create([make_row("0", 1, 10, "a"), make_row("0", None, 11, "b"), make_row("1", 1, 10, "c")],
                   loose=True)
    src = backend.open(order_by="raft_index")
    with pytest.raises(SourceError, match=r"partition 0: 1 row\(s\) have NULL in an ordering column \(raft_index\)"):
        src.read("0", None, 0, 10)
    with pytest.raises(SourceError, match="NULL in an ordering column"):
        src.plan("0")
    assert [e.event["event_id"] for e in read_all(src, "1", 10)] == ["c"]
    # The same rows are fine in time order (raft_index is not part of that key).
    assert len(read_all(backend.open(order_by="event_time"), "0", 10)) == 2


def test_duplicate_rows_are_reported_never_skipped(backend):
    # Three copies of one event; with limit 2 the group straddles a page end.
    rows = [make_row("0", i, 100 + i, "e-%d" % i) for i in range(4)]
    rows += [make_row("0", 9, 102, "e-2"), make_row("0", 10, 102, "e-2")]
    backend.create(rows)
    for limit in (1, 2, 3, 100):
        events = read_all(backend.open(order_by="event_time"), "0", limit)
        assert [e.seq for e in events] == list(range(1, 7))
        assert [(e.event or {}).get("event_id") for e in events] == ["e-0", "e-1", "e-2", None, None, "e-3"]
        copies = [e for e in events if e.event is None]
        # duplicate_of is the ordering key of the first copy; positions are key + rank
        assert all(e.duplicate_of == (102, "e-2") for e in copies)
        assert [e.position for e in events[2:5]] == [(102, "e-2", 1), (102, "e-2", 2), (102, "e-2", 3)]
        assert all("duplicate row: the same event" in e.error and e.raw_row["event_id"] == "e-2" for e in copies)


def test_copies_far_apart_in_raft_order_are_found(backend):
    # Like `ceptra-lab seed-history --duplicate-ratio`: a copy stored later under a new raft_index.
    rows = [make_row("0", i, 1000 + i, "e-%02d" % i) for i in range(1, 31)]
    rows += [make_row("0", 31, 1003, "e-03"), make_row("0", 32, 1020, "e-20"), make_row("0", 33, 1003, "e-03")]
    backend.create(rows)
    for limit in (4, 1000):
        src = backend.open(order_by="raft_index")
        events = read_all(src, "0", limit)
        assert [e.seq for e in events] == list(range(1, 34))
        assert [e.position[0] for e in events if e.duplicate_of is not None] == [31, 32, 33]
        assert [e.duplicate_of[0] for e in events if e.duplicate_of is not None] == [3, 20, 3]
        assert len([e for e in events if e.event]) == 30
        # Resuming between the copies still recognises the last one.
        tail = read_all(src, "0", limit, after=events[31].position, after_seq=32)
        assert tail[0].duplicate_of[0] == 3 and tail[0].seq == 33
    # find_copies: false skips the lookup (for sources with unique event ids): all rows are sent.
    events = read_all(backend.open(order_by="raft_index", find_copies=False), "0", 1000)
    assert len([e for e in events if e.event]) == 33


def copies_table(backend):
    """30 events in raft order and three later copies (of e-03 twice and of e-20)."""
    rows = [make_row("0", i, 1000 + i, "e-%02d" % i) for i in range(1, 31)]
    rows += [make_row("0", 31, 1003, "e-03"), make_row("0", 32, 1020, "e-20"), make_row("0", 33, 1003, "e-03")]
    backend.create(rows)


def copy_marks(events):
    return [(e.position[0], e.duplicate_of[0]) for e in events if e.duplicate_of is not None]


def test_raft_order_copies_cost_one_pass_per_partition_not_a_query_per_page(backend):
    copies_table(backend)
    src = backend.open(order_by="raft_index")
    events = read_all(src, "0", 4)          # 9 pages and the empty one that ends the partition
    assert copy_marks(events) == [(31, 3), (32, 20), (33, 3)]
    # one pass finds the events stored twice, one query their copies' positions; no page asks again
    assert len(src.statements) < 20 and sum(1 for q in src.statements if "ceptra_v" in q) == 1
    pages = [q for q in src.statements if "ORDER BY" in q and "LIMIT" in q and "DESC" not in q and "LAG" not in q]
    assert len(pages) == 10


def test_raft_order_rows_appended_after_the_pass_are_still_checked_for_copies(backend):
    copies_table(backend)
    src = backend.open(order_by="raft_index")
    first = src.read("0", None, 0, 10)       # the partition's pass happens here
    backend.execute("INSERT INTO %s VALUES ('0', 40, 1007, 'e-07', 'k1', 'metric_sample_v1', '{\"v\": 1}', NULL)"
                    % backend.table("ceptra_history"))
    backend.execute("INSERT INTO %s VALUES ('0', 41, 1041, 'e-41', 'k1', 'metric_sample_v1', '{\"v\": 1}', NULL)"
                    % backend.table("ceptra_history"))
    events = first + read_all(src, "0", 10, after=first[-1].position, after_seq=first[-1].seq)
    assert copy_marks(events) == [(31, 3), (32, 20), (33, 3), (40, 7)]
    assert [e.seq for e in events] == list(range(1, 36)) and events[-1].event["event_id"] == "e-41"


def test_raft_order_with_more_copies_than_the_index_holds_looks_pages_up(backend, monkeypatch):
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import source_sql
    copies_table(backend)
    indexed = read_all(backend.open(order_by="raft_index"), "0", 4)
    monkeypatch.setattr(source_sql, "COPY_INDEX_LIMIT", 1)    # two events stored twice: above it
    src = backend.open(order_by="raft_index")
    looked_up = read_all(src, "0", 4)
    assert [(e.position, e.seq, e.duplicate_of, e.error) for e in looked_up] == \
        [(e.position, e.seq, e.duplicate_of, e.error) for e in indexed]
    assert sum(1 for q in src.statements if "ceptra_v" in q) > 2     # lookups per page


def test_repeated_raft_index_is_an_ordering_error(backend):
    backend.create([make_row("0", 1, 10, "a"), make_row("0", 1, 11, "b"), make_row("0", 2, 12, "c")])
    events = read_all(backend.open(order_by="raft_index"), "0", 1)
    assert [(e.event or {}).get("event_id") for e in events] == ["a", None, "c"]
    assert "duplicate ordering key" in events[1].error and events[1].duplicate_of is None


def test_pages_are_fetched_with_limit_never_the_whole_table(backend):
    rows = [make_row("0", i, i, "e-%05d" % i) for i in range(3000)]
    backend.create(rows)
    src = backend.open()
    fetched = []
    original = src._execute

    def recording_execute(query, params):
        result = original(query, params)
        fetched.append(len(result))
        return result

    src._execute = recording_execute
    events = read_all(src, "0", 100)
    assert len(events) == 3000
    read_queries = [s for s in src.statements if s.startswith("SELECT \"event_time_ns\"")]
    assert read_queries and all("LIMIT" in s and "ORDER BY" in s for s in read_queries)
    # One null-key check (a COUNT), then pages of at most limit + 2 rows (the resume row,
    # read again to find its rank's group, and the look-ahead).
    assert max(fetched) <= 102
    assert len(fetched) >= 30


def test_dead_letter_file_is_append_only_jsonl(tmp_path):
    path = str(tmp_path / "dead.jsonl")
    dead_letter_write(path, "3", (12, "e-1"), "payload is not valid JSON", {"payload": "{x", "event_id": "e-1"})
    dead_letter_write(path, "3", (13,), "missing event_id", {"payload": "{}", "blob": b"\x00\x01"})
    lines = [json.loads(line) for line in open(path)]
    assert [r["position"] for r in lines] == [[12, "e-1"], [13]]
    assert lines[0]["part_id"] == "3" and lines[0]["error"] == "payload is not valid JSON"
    assert lines[0]["row"] == {"payload": "{x", "event_id": "e-1"}
    assert {"time", "time_ns"} <= set(lines[1])
    with pytest.raises(SourceError, match="does not exist"):
        dead_letter_write(str(tmp_path / "nodir" / "d.jsonl"), "3", (1,), "x", {})


def test_historic_event_keeps_the_seam_shape():
    event = HistoricEvent("1", (5,), 1, {"event_id": "a"}, 10, None)
    assert event.raw_row is None and event._fields[:6] == ("part_id", "position", "seq", "event", "raw_size", "error")


def test_empty_partition_plans_zero_and_reads_nothing(backend):
    backend.create([make_row("0", 1, 10, "a")])
    src = backend.open(part_ids=["0", "5"])
    assert src.plan("5") == {"events": 0, "first_position": None, "last_position": None,
                             "min_ts_ns": None, "max_ts_ns": None}
    assert src.read("5", None, 0, 10) == []


def test_resume_position_of_another_ordering_is_refused(backend):
    backend.create([make_row("0", 1, 10, "a"), make_row("0", 2, 11, "b")])
    time_position = backend.open(order_by="event_time").read("0", None, 0, 1)[0].position
    with pytest.raises(SourceError, match="different order_by/tiebreak setting"):
        backend.open(order_by="raft_index", columns={"tiebreak": None} if backend.kind == "postgresql" else {}) \
            .read("0", time_position + (1, 2), 1, 10)


@pytest.mark.postgres
def test_postgres_native_types_jsonb_uuid_integer_partition(tmp_path, pg_dsn):
    b = Backend("postgresql", tmp_path, pg_dsn)
    try:
        table = b.table("typed")
        b.execute("CREATE TABLE %s (part_id INT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL, "
                  "event_id UUID NOT NULL, partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, "
                  "payload JSONB NOT NULL, flags JSONB, id BIGSERIAL PRIMARY KEY)" % table)
        for i in range(7):
            b.execute("INSERT INTO %s (part_id, raft_index, event_time_ns, event_id, partition_key, schema_key, "
                      "payload, flags) VALUES (3, %d, 100, gen_random_uuid(), 'k', 'metric_sample_v1', "
                      "'{\"metric\": \"m\", \"value\": %d}', '[\"LATE\"]')" % (table, i, i))
        # All seven share event_time_ns, so uuid order decides; the mapped id ends each position.
        src = b.open(table=table, columns={"tiebreak": "id"})
        assert src.partitions() == ["3"]
        events = read_all(src, "3", 2)
        ids = [e.event["event_id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 7
        assert all(e.event["flags"] == ["LATE", "REPLAY"] and isinstance(e.position[1], str) for e in events)
        assert sorted(e.position[2] for e in events) == list(range(1, 8))
        assert sorted(e.event["payload"]["value"] for e in events) == list(range(7))
        assert src.plan("3", after=events[2].position)["events"] == 4
        # Raft order looks up earlier copies by (event_time_ns, event_id): uuid values must bind.
        by_raft = read_all(b.open(table=table, order_by="raft_index"), "3", 3)
        assert [e.event["payload"]["value"] for e in by_raft] == list(range(7))
        # jsonb is read as its text (no driver decode), through the same checks
        reads = [q for q in src.statements if "\"payload\"" in q]
        assert reads and all("CAST(\"payload\" AS text)" in q and "CAST(\"flags\" AS text)" in q for q in reads)
        b.execute("INSERT INTO %s (part_id, raft_index, event_time_ns, event_id, partition_key, schema_key, payload) "
                  "VALUES (3, 99, 200, gen_random_uuid(), 'k', 'metric_sample_v1', '[1, 2]')" % table)
        last = read_all(b.open(table=table, order_by="raft_index"), "3", 100)[-1]
        assert last.error == "payload must be a JSON object, got an array" and last.seq == 8
    finally:
        b.close()


def _line_message(event):
    """The message a sender puts on the wire for ``event`` (wire + closing brace)."""
    return json.loads(event.wire + b"}")


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request, monkeypatch):
    """Run a source test with orjson (when installed) and with the standard library alone."""
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc
    if request.param == "stdlib":
        monkeypatch.setattr(enc, "orjson", None)
        monkeypatch.setattr(enc, "_fast_loads", enc._stdlib_parse_any)
        monkeypatch.setattr(rows_mod, "_fast_loads", enc._stdlib_parse_any)
    elif enc.orjson is None:
        pytest.skip("orjson is not installed")  # the stdlib variant still runs
    return request.param


def test_wire_is_the_event_as_sent_on_both_paths(backend, json_backend):
    pretty = json.dumps({"metric": "m", "labels": {"k": "v\u00e9"}, "value": 2}, indent=2)
    rows = [
        make_row("0", 1, 10, "plain"),                                        # common row: fast path
        make_row("0", 2, 11, "flagged", flags='["LATE"]'),                    # flags: general path
        dict(make_row("0", 3, 12, "pretty"), payload=pretty),                 # line breaks in the payload
        make_row("0", 4, 13, "quo\"te\\\u00e9", key="k\"ey"),                 # strings needing escapes
        dict(make_row("0", 5, 14, "nan"), payload='{"value": NaN}'),          # not JSON (Python json says yes)
    ]
    backend.create(rows)
    events = read_all(backend.open(order_by="raft_index"), "0", 2)
    good = [e for e in events if e.error is None]
    assert [e.event["event_id"] for e in good] == ["plain", "flagged", "pretty", "quo\"te\\\u00e9"]
    for e in good:
        assert _line_message(e) == e.event
        assert b"\n" not in e.wire and b"\r" not in e.wire
        assert e.raw_size == len(e.wire) + 1
    assert good[1].event["flags"] == ["LATE", "REPLAY"]
    # The common row embeds the database's payload text unchanged.
    assert rows[0]["payload"].encode() in good[0].wire
    assert events[4].event is None and events[4].wire is None
    assert "payload is not valid JSON" in events[4].error and events[4].position[0] == 5


def test_read_wire_matches_read_with_summary_events(backend, json_backend):
    rows = [make_row("0", i, 100 + i // 2, "e-%02d" % i) for i in range(12)]
    rows[3] = dict(rows[3], payload="[1]")
    rows[7] = dict(rows[7], partition_key=None)
    rows[9] = dict(rows[9], event_id=" ")
    rows.append(make_row("0", 20, 100, "e-00"))   # a second copy of e-00
    backend.create(rows, loose=True)
    for order_by in ("event_time", "raft_index"):
        src = backend.open(order_by=order_by)
        full = read_all(src, "0", 4)
        after, seq, light = None, 0, []
        while True:
            page = src.read_wire("0", after, seq, 4)
            if not page:
                break
            light.extend(page)
            after, seq = page[-1].position, page[-1].seq
        assert [(e.position, e.seq, e.error, e.duplicate_of, e.wire, e.raw_size) for e in light] == \
            [(e.position, e.seq, e.error, e.duplicate_of, e.wire, e.raw_size) for e in full]
        for lite, whole in zip(light, full):
            if whole.event is None:
                assert lite.event is None and lite.raw_row == whole.raw_row
            else:
                summary_keys = ("event_id", "part_id", "partition_key", "ts_ns", "schema_key")
                assert lite.event == {k: whole.event[k] for k in summary_keys}
                assert _line_message(lite) == whole.event
        assert sum(1 for e in light if e.duplicate_of is not None) == 1


def test_oversized_event_is_measured_as_sent(backend):
    # The payload's own spacing counts: the row is sent as the database holds it.
    spaced = "{" + ", ".join('"k%03d": %d' % (i, i) for i in range(200)) + "}"
    backend.create([dict(make_row("0", 1, 10, "spaced"), payload=spaced), make_row("0", 2, 11, "small")])
    events = read_all(backend.open(order_by="raft_index", max_event_bytes=4096), "0", 10)
    assert events[0].error is None and events[0].raw_size == len(events[0].wire) + 1 <= 4096
    tight = read_all(backend.open(order_by="raft_index", max_event_bytes=1024), "0", 10)
    assert "above max_event_bytes 1024" in tight[0].error and tight[0].position == events[0].position
    assert tight[1].error is None


def test_partition_start_begins_each_partition_after_its_own_bound(backend):
    """A full recovery starts each partition after what its baseline checkpoint holds: by raft
    index (strictly after) or by event time (from the high-water mark, inclusive); a partition
    without a bound starts at the beginning; the plan counts only what is left."""
    rows = [make_row(p, i, 1000 + i, "e-%s-%02d" % (p, i)) for p in ("0", "1", "2") for i in range(1, 11)]
    backend.create(rows)
    src = backend.open(order_by="raft_index", partition_start={"0": {"after_raft_index": 6}})
    assert [e.event["event_id"] for e in read_all(src, "0", 3)] == ["e-0-%02d" % i for i in range(7, 11)]
    assert [e.seq for e in read_all(src, "0", 3)] == [1, 2, 3, 4]
    assert src.plan("0")["events"] == 4 and src.plan("0")["min_ts_ns"] == 1007
    assert len(read_all(src, "1", 100)) == 10
    src = backend.open(order_by="event_time", partition_start={"2": {"from_event_time_ns": 1008}})
    assert [e.event["ts_ns"] for e in read_all(src, "2", 2)] == [1008, 1009, 1010]


@pytest.mark.parametrize("bound, message", [
    ({"0": 5}, "must be {after_raft_index: N} or {from_event_time_ns: T}"),
    ({"0": {"after_raft_index": -1}}, "must be a whole number >= 0"),
    ({"0": {"after_raft_index": 1, "from_event_time_ns": 2}}, "must be {after_raft_index"),
    ([1], "partition_start must be a mapping"),
])
def test_partition_start_refuses_bad_bounds(tmp_path, bound, message):
    backend = Backend("sqlite", tmp_path)
    backend.create([make_row("0", 1, 1, "e")])
    with pytest.raises(SourceError, match=message.replace("{", "\\{").replace("[", "\\[")):
        backend.open(partition_start=bound)
    backend.close()


def test_partition_start_by_raft_index_needs_the_column(tmp_path):
    backend = Backend("sqlite", tmp_path)
    backend.create([make_row("0", 1, 1, "e")])
    with pytest.raises(SourceError, match="needs a raft_index column"):
        backend.open(columns={"raft_index": None}, partition_start={"0": {"after_raft_index": 1}})
    backend.close()


def test_raft_order_copy_lookup_keeps_the_window_out_of_the_index_range(tmp_path):
    """With a window, SQLite took the window as the time index's range and scanned it once per
    looked-up event (seconds per page); the lookup probes the index by equality instead."""
    backend = Backend("sqlite", tmp_path)
    rows = [make_row("0", i, 1000 + i, "e-%04d" % i) for i in range(1, 3001)]
    rows.append(make_row("0", 3001, 1000 + 10, "e-0010"))          # a stored copy of event 10
    backend.create(rows)
    src = backend.open(order_by="raft_index", window={"end_ns": 10 ** 18})
    events = read_all(src, "0", 1000)
    assert [e.duplicate_of[0] for e in events if e.duplicate_of] == [10] and len(events) == 3001
    lookups = [q for q in src.statements if "ceptra_v" in q]
    assert lookups and all('+"event_time_ns" <' in q for q in lookups)
    backend.close()
