"""Traffic tools: seed-history (SQLite and PostgreSQL) and live appends with a skipped window."""
from __future__ import annotations

import json
import os
import sqlite3
import uuid

import pytest

from ceptra_lab.cluster import fnv1a_64
from ceptra_lab.traffic import live, load_bundle, seed_history

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
GAMING = os.path.join(SHARED, "reference/bundles/gaming_cheat_detection.yaml")
SUPPLY = os.path.join(SHARED, "reference/bundles/supply_chain_workflow.yaml")
COLUMNS = ["part_id", "raft_index", "event_time_ns", "event_id", "partition_key", "schema_key", "payload", "flags"]


def check_rows(rows, bundle_path, partitions, per_partition):
    compiled = load_bundle(bundle_path)
    domains = compiled.effective_lane_domains
    by_part = {}
    for part_id, raft_index, event_time, event_id, key, schema_key, payload, flags in rows:
        by_part.setdefault(part_id, []).append(raft_index)
        assert fnv1a_64(key.encode()) % partitions == int(part_id)
        assert schema_key == "metric_sample_v1" and flags is None and isinstance(event_time, int)
        sample = json.loads(payload)
        feeding = [q for q in compiled.queries if q.matches(sample["metric"], sample["labels"])]
        assert feeding, f"sample {sample} feeds no query of the bundle"
        for query in feeding:
            for label in query.by_labels:
                assert int(sample["labels"][label].rsplit("-", 1)[1]) < domains[label]
    assert sorted(by_part) == [str(p) for p in range(partitions)]
    for indexes in by_part.values():
        assert indexes == list(range(1, per_partition + 1))


@pytest.mark.parametrize("bundle", [GAMING, SUPPLY])
def test_seed_history_sqlite(tmp_path, bundle):
    path = tmp_path / "history.db"
    count = seed_history(f"sqlite:{path}", partitions=3, events_per_partition=200, bundle=bundle, keys=8,
                         secondary_classification_ratio=0.3, duplicate_ratio=0.1)
    assert count == 600
    connection = sqlite3.connect(path)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(ceptra_history)")]
    assert columns == COLUMNS
    indexes = {row[1] for row in connection.execute("PRAGMA index_list(ceptra_history)")}
    assert {"ceptra_history_raft", "ceptra_history_time"} <= indexes
    rows = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM ceptra_history ORDER BY part_id, raft_index").fetchall()
    check_rows(rows, bundle, 3, 200)
    distinct = connection.execute("SELECT COUNT(DISTINCT event_id) FROM ceptra_history").fetchone()[0]
    assert 0 < 600 - distinct < 120            # about 10 % repeat an earlier event
    classified = sum(1 for row in rows if "secondary_classification" in json.loads(row[6]))
    assert 60 < classified < 300


def test_seed_history_is_deterministic(tmp_path):
    for name in ("a.db", "b.db"):
        seed_history(f"sqlite:{tmp_path / name}", 2, 50, GAMING, start_ns=10**18, seed=3)
    dump = [sqlite3.connect(tmp_path / name).execute("SELECT * FROM ceptra_history ORDER BY rowid").fetchall()
            for name in ("a.db", "b.db")]
    assert dump[0] == dump[1]


def test_seed_history_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="--table"):
        seed_history(f"sqlite:{tmp_path / 'x.db'}", 1, 1, GAMING, table="t; DROP TABLE x")
    with pytest.raises(ValueError, match="sqlite:PATH"):
        seed_history("mysql://nope", 1, 1, GAMING)
    with pytest.raises(ValueError, match="not valid"):
        seed_history(f"sqlite:{tmp_path / 'x.db'}", 1, 1, os.path.join(SHARED, "reference/bundles/iot_workflow.yaml"))


@pytest.mark.postgres
def test_seed_history_postgres():
    import psycopg
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    table = f"lab_seed_{uuid.uuid4().hex[:10]}"
    try:
        assert seed_history(dsn, 2, 150, GAMING, table=table, duplicate_ratio=0.05) == 300
        with psycopg.connect(dsn) as connection:
            rows = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY part_id, raft_index").fetchall()
            indexes = {r[0] for r in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))}
        check_rows(rows, GAMING, 2, 150)
        assert {f"{table}_raft", f"{table}_time"} <= indexes
    finally:
        with psycopg.connect(dsn) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {table}")


def test_live_appends_and_skips_a_window(lab_factory):
    lab = lab_factory(partitions=2)
    totals = live(lab.url, lab.tokens["ingest"], rate=400, duration=1.0, skip_from_ms=250, skip_to_ms=500,
                  bundle=GAMING, partitions=2, out=open("/dev/null", "w"))
    assert totals["sent"] + totals["skipped"] == 400
    assert 90 <= totals["skipped"] <= 110 and totals["healthy"] == totals["sent"] and totals["refused"] == 0
    state = lab.request("GET", "/v1/state", role="observer")[2]
    assert sum(p["commit_index"] for p in state["partitions"]) == totals["sent"]


def test_live_resends_transient_refusals_with_the_hinted_backoff(lab_factory):
    lab = lab_factory(partitions=2)
    status, dummy, body = lab.request("POST", "/v1/test/faults", body={"http_503_ratio": 0.3}, role="admin")
    assert status == 200, body
    totals = live(lab.url, lab.tokens["ingest"], rate=200, duration=1.0, partitions=2, out=open("/dev/null", "w"))
    lab.request("POST", "/v1/test/faults", body={"http_503_ratio": 0.0}, role="admin")
    assert totals["retried"] > 0 and totals["refused"] == 0
    assert totals["healthy"] + totals["duplicate"] == totals["sent"] == 200
    state = lab.request("GET", "/v1/state", role="observer")[2]
    assert sum(p["commit_index"] for p in state["partitions"]) == 200     # each event once


def test_live_archives_every_event_and_mirrors_skipped_ones(lab_factory, tmp_path):
    lab, reference = lab_factory(partitions=2), lab_factory(partitions=2)
    history = str(tmp_path / "history.sqlite")
    totals = live(lab.url, lab.tokens["operator"], rate=400, duration=1.0, skip_from_ms=250, skip_to_ms=500,
                  bundle=GAMING, partitions=2, out=open("/dev/null", "w"), archive="sqlite:" + history,
                  mirror_url=reference.url, mirror_token=reference.tokens["operator"], classification_ratio=1.0)
    assert totals["archived"] == totals["mirrored"] == 400 and totals["sent"] + totals["skipped"] == 400
    with sqlite3.connect(history) as conn:
        rows = conn.execute("SELECT part_id, event_id, payload FROM ceptra_history").fetchall()
    assert len(rows) == 400 and len({r[1] for r in rows}) == 400
    assert all("secondary_classification" in json.loads(r[2]) for r in rows)
    mine = lab.request("GET", "/v1/state", role="observer")[2]["partitions"]
    theirs = reference.request("GET", "/v1/state", role="observer")[2]["partitions"]
    assert sum(p["commit_index"] for p in mine) == totals["sent"]
    assert sum(p["commit_index"] for p in theirs) == 400
