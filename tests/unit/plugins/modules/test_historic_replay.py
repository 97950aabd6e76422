"""historic_replay / historic_replay_info modules: real AnsibleModule, real SQLite source and
cursor store, the cluster replaced by the in-memory fake append stream."""

import json
import sqlite3

import pytest

from ansible_collections.ceptra.backfill.plugins.modules import historic_replay, historic_replay_info

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import write_history


@pytest.fixture
def setup(tmp_path):
    history = str(tmp_path / "history.db")
    write_history(history, parts=3, n=40)
    args = {"source": {"type": "sqlite", "path": history},
            "cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.db")},
            "run_id": "inc-1", "throttle": False, "audit_file": str(tmp_path / "audit.jsonl")}
    return args, tmp_path


def test_check_mode_returns_plan_and_sends_nothing(setup, run_module):
    args, dummy = setup
    cluster = ControlPlane()
    failed, result = run_module(historic_replay, dict(args, estimated_rate=10), cluster, check_mode=True)
    assert not failed and result["changed"] is True and result["done"] is False
    assert result["plan"]["partitions"]["2"]["events_remaining"] == 40
    assert result["plan"]["partitions"]["2"]["estimated_duration_s"] == 4.0   # 40 events at 10/s
    assert cluster.requests == []


def test_replay_then_rerun_is_unchanged_and_info_reports_done(setup, run_module):
    args, tmp_path = setup
    cluster = ControlPlane()
    failed, result = run_module(historic_replay, args, cluster)
    assert not failed, result
    assert result["done"] and result["changed"] and result["events_done"] == 120
    assert sorted(cluster.applied) == ["0", "1", "2"] and cluster.closed
    assert result["assigned_partitions"] == ["0", "1", "2"]
    assert "secret-token" not in json.dumps(result)
    failed, again = run_module(historic_replay, args, ControlPlane())
    assert not failed and again["done"] and again["changed"] is False
    info_args = {k: v for k, v in args.items() if k in ("source", "cursor_store", "run_id")}
    failed, info = run_module(historic_replay_info, info_args, cluster)
    assert not failed and info["done"] and info["events_done"] == 120 and info["events_remaining"] == 0
    assert info["paused"] is False and info["changed"] is False


def test_fan_out_over_two_hosts_covers_every_partition(setup, run_module):
    args, dummy = setup
    cluster = ControlPlane()
    shares = []
    for host in ("w-a", "w-b"):
        failed, result = run_module(historic_replay, dict(args, worker_hosts=["w-a", "w-b"], this_host=host), cluster)
        assert not failed and result["done"]
        shares.append(result["assigned_partitions"])
    assert sorted(shares[0] + shares[1]) == ["0", "1", "2"] and not set(shares[0]) & set(shares[1])
    assert all(len(cluster.applied[p]) == 40 for p in ("0", "1", "2"))


def test_stopped_partition_fails_once_others_finished(setup, run_module):
    args, dummy = setup
    cluster = ControlPlane()
    cluster.script["h-1-0007"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_PAYLOAD",
                                   "error": "payload rejected"}]
    failed, result = run_module(historic_replay, args, cluster)
    assert failed
    assert "partition 1 at event h-1-0007" in result["msg"] and "PERMANENT_PAYLOAD" in result["msg"]
    assert result["done"] and len(cluster.applied["0"]) == 40 and len(cluster.applied["1"]) == 6
    failed, result = run_module(historic_replay, dict(args, fail_on_stopped=False), cluster)
    assert not failed and result["stopped"][0]["event_id"] == "h-1-0007"


def test_null_ordering_column_refuses_only_its_partition_named_with_the_column(setup, run_module):
    args, dummy = setup
    conn = sqlite3.connect(args["source"]["path"])
    conn.execute("UPDATE ceptra_history SET raft_index = NULL WHERE part_id = '2' AND raft_index IN (3, 4)")
    conn.commit()
    conn.close()
    args = dict(args, order_by="raft_index")
    cluster = ControlPlane()
    failed, plan = run_module(historic_replay, args, cluster, check_mode=True)
    assert not failed and plan["plan"]["partitions"]["2"]["status"] == "refused"
    assert plan["refused"][0]["part_id"] == "2" and plan["refused"][0]["columns"] == ["raft_index"]
    assert cluster.requests == []
    failed, result = run_module(historic_replay, args, cluster)
    assert failed and result["done"]
    assert "partition 2: column(s) raft_index" in result["msg"] and "2 row(s) have NULL" in result["msg"]
    assert result["refused"] == plan["refused"] and result["partitions"]["2"]["status"] == "refused"
    assert len(cluster.applied["0"]) == 40 and len(cluster.applied["1"]) == 40 and "2" not in cluster.applied


def test_bad_input_fails_with_a_message(setup, run_module):
    args, tmp_path = setup
    bad = dict(args, source={"type": "oracle", "path": "x"})
    failed, result = run_module(historic_replay, bad, ControlPlane())
    assert failed and "type must be 'sqlite' or 'postgresql'" in result["msg"]
    failed, result = run_module(historic_replay, dict(args, run_id="a/b"), ControlPlane())
    assert failed and "without '/'" in result["msg"]
    failed, result = run_module(historic_replay, dict(args, on_bad_row="dead_letter"), ControlPlane())
    assert failed and "dead_letter_path" in result["msg"]


def test_without_sessions_warns_about_event_id_dedup(setup, run_module):
    args, dummy = setup
    failed, result = run_module(historic_replay, dict(args, use_replay_sessions=False), ControlPlane())
    assert not failed and result["dedup"] == "event_id"
    assert "event_id dedup" in json.dumps(result["warnings"])   # 2.19 warnings are structured


def test_worker_group_check_mode_compares_real_run_records_info_compares(setup, run_module):
    args, dummy = setup
    cluster = ControlPlane()
    sliced = dict(args, worker_hosts=["w-b"], this_host="w-b")       # an AWX slice's own hosts only
    failed, result = run_module(historic_replay, sliced, cluster, check_mode=True)
    assert not failed and cluster.requests == []                      # nothing recorded yet: a plan
    failed, result = run_module(historic_replay, dict(args, worker_hosts=["w-a", "w-b"], this_host="w-a"), cluster)
    assert not failed and result["done"]
    for module, check in ((historic_replay, True), (historic_replay, False)):
        failed, result = run_module(module, sliced, cluster, check_mode=check)
        assert failed and "worker group ['w-a', 'w-b']" in result["msg"] and "reassign_workers" in result["msg"]
    info_args = {k: v for k, v in sliced.items() if k in ("source", "cursor_store", "run_id", "worker_hosts", "this_host")}
    failed, result = run_module(historic_replay_info, info_args, cluster)
    assert failed and "passes ['w-b']" in result["msg"]
    assert sorted(cluster.applied) == ["0", "2"]                       # w-a's share only
    failed, result = run_module(historic_replay, dict(sliced, reassign_workers=True), cluster, check_mode=True)
    assert not failed and result["assigned_partitions"] == ["0", "1", "2"]   # what the reassignment would deal
    assert sorted(cluster.applied) == ["0", "2"]                              # ... and nothing sent
    failed, result = run_module(historic_replay, dict(sliced, reassign_workers=True), cluster)
    assert not failed and result["done"] and result["assigned_partitions"] == ["0", "1", "2"]
    assert all(len(cluster.applied[p]) == 40 for p in ("0", "1", "2"))   # 0 and 2 resumed as done: once
