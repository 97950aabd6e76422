"""The replay worker's documented identity (operator: appends plus /readyz lag polling and
CP audit records) works end to end over mutual TLS, and an observer identity cannot append.

Issue 11: roles are capability sets (contract section 1). The lab-side role matrix lives in
lab/tests/test_auth_tls.py; this is the collection's view of it.
"""

import json
import os
import sqlite3

import pytest

from ceptra_lab.certs import write_certs
from ceptra_lab.testing import LabProcess

START_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    certs = str(tmp_path_factory.mktemp("lab-certs"))
    write_certs(certs)
    with LabProcess(partitions=2, test_mode=True, tls_dir=certs) as running:
        yield running


def write_history(path, parts=2, per_part=150, prefix="sec"):
    """A small history; ``prefix`` keeps event ids apart between tests sharing a lab (it
    deduplicates every event by event_id, REPLAY ones included)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ceptra_history (part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL, "
                 "event_id TEXT NOT NULL, partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL, "
                 "flags TEXT)")
    rows = [(str(p), i, START_NS + i * 1_000_000, "%s-%d-%04d" % (prefix, p, i), "key-%d" % i, "metric_sample_v1",
             json.dumps({"metric": "security_test_total", "labels": {}, "value": 1.0}), None)
            for p in range(parts) for i in range(1, per_part + 1)]
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return len(rows)


REPLAY_PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/ceptra.backfill.cp: %(connection)s
  tasks:
    - name: replay
      ceptra.backfill.historic_replay:
        source: {type: sqlite, path: "%(history)s"}
        cursor_store: {type: sqlite, path: "%(cursors)s"}
        run_id: %(run_id)s
        order_by: raft_index
      register: replay
      until: replay is failed or replay.done
      retries: 50
      delay: 0
"""


def replay_play(connection, history, tmp_path, run_id):
    return REPLAY_PLAY % {"connection": json.dumps(connection), "history": history,
                          "cursors": tmp_path / ("%s.db" % run_id), "run_id": run_id}


def committed(lab):
    return sum(p["commit_index"] for p in lab.request("GET", "/v1/state", role="admin")[2]["partitions"])


def test_replay_worker_as_operator_over_mutual_tls(tls_lab, run_playbook, tmp_path):
    history = str(tmp_path / "history.db")
    total = write_history(history)
    certs = tls_lab.tls_dir
    operator = {"url": tls_lab.url, "client_cert": os.path.join(certs, "operator.pem"),
                "client_key": os.path.join(certs, "operator-key.pem"), "ca_path": os.path.join(certs, "ca.pem")}
    before = committed(tls_lab)
    result = run_playbook(replay_play(operator, history, tmp_path, "tls-operator"))
    assert result.rc == 0, result.stdout + result.stderr
    replay = result.results["replay"]
    assert replay["done"] and replay["events_done"] == total and replay["stopped"] == []
    # the throttle's /readyz polls and the CP audit records worked: none of the ingest-only
    # warnings ("lag polling failed", "could not write the CP audit record")
    assert replay.get("warnings", []) == [] and "[WARNING]" not in result.stdout + result.stderr, result.stdout
    assert committed(tls_lab) == before + total
    records = tls_lab.request("GET", "/v1/audit?kind=replay", role="observer")[2]["records"]
    assert {r["actor"] for r in records} == {"spiffe://ceptra.lab/role/operator"}
    assert {"run_start", "run_end"} <= {r["details"]["event"] for r in records}


@pytest.mark.parametrize("transport", ["mtls", "token"])
def test_replay_as_observer_is_refused_and_appends_nothing(tls_lab, lab, run_playbook, tmp_path, transport):
    history = str(tmp_path / "history.db")
    write_history(history, parts=2, per_part=20)
    if transport == "mtls":
        target, certs = tls_lab, tls_lab.tls_dir
        connection = {"url": target.url, "client_cert": os.path.join(certs, "observer.pem"),
                      "client_key": os.path.join(certs, "observer-key.pem"), "ca_path": os.path.join(certs, "ca.pem")}
    else:
        target, connection = lab, {"url": lab.url, "token": lab.tokens["observer"]}
    before = committed(target)
    result = run_playbook(replay_play(connection, history, tmp_path, "observer-" + transport))
    replay = result.results["replay"]
    assert "Traceback" not in result.stdout + result.stderr
    assert committed(target) == before                     # not one event appended
    assert result.status("replay") == "failed" and result.rc != 0
    assert "403" in replay["msg"] and "cannot append events" in replay["msg"], replay["msg"]


def test_replay_as_ingest_appends_but_cannot_read_or_audit(tls_lab, run_playbook, tmp_path):
    """docs/replay.md: an ingest-only identity replays, with warnings for the reads and CP audit it may not do."""
    history = str(tmp_path / "history.db")
    total = write_history(history, parts=2, per_part=20, prefix="sec-ingest")
    certs = tls_lab.tls_dir
    ingest = {"url": tls_lab.url, "client_cert": os.path.join(certs, "ingest.pem"),
              "client_key": os.path.join(certs, "ingest-key.pem"), "ca_path": os.path.join(certs, "ca.pem")}
    before = committed(tls_lab)
    result = run_playbook(replay_play(ingest, history, tmp_path, "ingest-only"))
    assert result.rc == 0 and result.results["replay"]["done"], result.stdout + result.stderr
    assert committed(tls_lab) == before + total
    assert "could not write the CP audit record (run_start): POST /v1/audit failed with 403" in result.stderr
    assert "GET /v1/state failed with 403" in result.stderr
    records = tls_lab.request("GET", "/v1/audit?kind=replay", role="observer")[2]["records"]
    assert not [r for r in records if r["details"].get("run_id") == "ingest-only"]
