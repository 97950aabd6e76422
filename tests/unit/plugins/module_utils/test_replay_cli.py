"""Replay CLI: plan/status/run/pause/resume over a real SQLite source and cursor store,
with the cluster replaced by the in-memory fake."""

import io
import json
import sqlite3

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import cli, engine

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import HISTORY_SCHEMA as SCHEMA
from ..test_support.replay_fakes import write_history


@pytest.fixture
def env(tmp_path, monkeypatch):
    history = str(tmp_path / "history.db")
    write_history(history, bad={(1, 10)})
    cluster = ControlPlane()
    monkeypatch.setattr(cli, "_client", lambda args: cluster)
    base = ["--run-id", "r1", "--source", history, "--cursor-store", str(tmp_path / "cursors.db")]
    return cluster, base, tmp_path


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_plan_prints_per_partition_counts_and_sends_nothing(env):
    cluster, base, dummy = env
    code, out, dummy = call(["plan"] + base + ["--json"])
    assert code == 0
    plan = json.loads(out)
    assert plan["partitions"]["0"]["events_remaining"] == 30 and plan["events_remaining"] == 60
    assert cluster.requests == []
    code, out, dummy = call(["plan"] + base)
    assert "partition 1: pending, 0 done, 30 remaining" in out


def test_run_reports_stopped_partition_and_exit_code(env):
    cluster, base, tmp_path = env
    code, out, err = call(["run"] + base + ["--no-throttle", "--audit-file", str(tmp_path / "a.jsonl")])
    assert code == cli.EXIT_STOPPED
    assert len(cluster.applied["0"]) == 30 and len(cluster.applied["1"]) == 9
    assert "partition 1 STOPPED at event h-1-0010 (position [" in err and "not valid JSON" in err
    code, out, dummy = call(["status"] + base)
    assert "partition 0: done, 30 done, 0 remaining" in out
    assert "partition 1: stopped" in out


def test_run_with_dead_letter_completes(env):
    cluster, base, tmp_path = env
    dead = tmp_path / "dead.jsonl"
    code, out, err = call(["run"] + base + ["--no-throttle", "--on-bad-row", "dead_letter",
                                            "--dead-letter", str(dead), "--quiet"])
    assert code == cli.EXIT_DONE, err
    assert len(cluster.applied["1"]) == 29
    assert json.loads(dead.read_text())["row"]["event_id"] == "h-1-0010"
    assert out.startswith("replay 60/60")


def test_time_budget_exit_gives_resume_hint_without_budget(env, monkeypatch):
    cluster, base, dummy = env
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
    monkeypatch.setattr(rr.ReplayRun, "run", lambda self, time_budget_s=None: dict(
        self.progress.snapshot(), done=False, interrupted=False, error=None, aborted=None,
        stopped=[], warnings=[], run_id="r1"))
    code, dummy, err = call(["run"] + base + ["--time-budget", "5"])
    assert code == cli.EXIT_INCOMPLETE
    assert "resume with:" in err and "--time-budget" not in err.split("resume with:")[1]
    assert "_replay.cli run --run-id r1" in err


def test_pause_and_resume_set_the_store_flag(env):
    cluster, base, tmp_path = env
    store_args = ["--run-id", "r1", "--cursor-store", str(tmp_path / "cursors.db")]
    assert call(["pause"] + store_args + ["--reason", "peak hours"])[0] == 0
    code, dummy, dummy = call(["run"] + base + ["--no-throttle", "--time-budget", "0.5", "--quiet"])
    assert code == cli.EXIT_INCOMPLETE and cluster.requests == []
    assert call(["resume"] + store_args)[0] == 0
    code, dummy, dummy = call(["run"] + base + ["--no-throttle", "--quiet", "--on-bad-row", "dead_letter",
                                                "--dead-letter", str(tmp_path / "d.jsonl")])
    assert code == 0


def test_bad_input_is_a_clear_error(env, tmp_path):
    dummy, base, dummy = env
    code, dummy, err = call(["plan", "--run-id", "r1", "--source", str(tmp_path / "missing.db"),
                             "--cursor-store", str(tmp_path / "c.db")])
    assert code == cli.EXIT_USAGE and "does not exist" in err and "Traceback" not in err
    code, dummy, err = call(["plan", "--run-id", "r1", "--cursor-store", str(tmp_path / "c.db")])
    assert code == cli.EXIT_USAGE and "--source" in err
    code, dummy, err = call(["run"] + base + ["--on-bad-row", "dead_letter"])
    assert code == cli.EXIT_USAGE and "dead_letter_path" in err


def test_fan_out_replays_only_this_hosts_share(env):
    cluster, base, dummy = env
    code, dummy, dummy = call(["run"] + base + ["--no-throttle", "--quiet", "--worker-hosts", "w1,w2", "--this-host", "w2"])
    assert sorted(cluster.applied) == ["1"]
    code, dummy, err = call(["plan"] + base + ["--worker-hosts", "w1,w2", "--this-host", "w3"])
    assert code == cli.EXIT_USAGE and "not in the worker group" in err


def test_operator_size_limit_and_copy_detection_reach_the_source_spec():
    params = {"source": {"type": "sqlite", "path": "/tmp/h.db"}, "order_by": None, "window_start_ns": None,
              "window_end_ns": None, "partitions": None, "max_event_bytes": 4096, "find_copies": False}
    spec = engine.source_spec_from_params(params)
    assert spec["max_event_bytes"] == 4096 and spec["find_copies"] is False
    # a key inside the source dict wins over the module option
    params["source"] = {"type": "sqlite", "path": "/tmp/h.db", "max_event_bytes": 2048}
    assert engine.source_spec_from_params(params)["max_event_bytes"] == 2048
    args = cli.build_parser().parse_args(["run", "--run-id", "r", "--source", "/tmp/h.db", "--cursor-store", "c.db",
                                          "--max-event-bytes", "8192", "--no-find-copies"])
    spec = cli.source_spec(args)
    assert spec["max_event_bytes"] == 8192 and spec["find_copies"] is False
    assert cli.run_config(args)["max_event_bytes"] == 8192
    plain = cli.source_spec(cli.build_parser().parse_args(["run", "--run-id", "r", "--source", "/tmp/h.db"]))
    assert "max_event_bytes" not in plain and "find_copies" not in plain


def test_source_size_check_uses_the_operators_limit(env, tmp_path):
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import source as src

    history = str(tmp_path / "big.db")
    conn = sqlite3.connect(history)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO ceptra_history VALUES ('0', 1, 1, 'e-1', 'k', 'metric_sample_v1', ?, NULL)",
                 (json.dumps({"metric": "m", "labels": {"pad": "x" * 3000}, "value": 1}),))
    conn.commit()
    conn.close()
    params = {"source": {"type": "sqlite", "path": history}, "order_by": "raft_index", "window_start_ns": None,
              "window_end_ns": None, "partitions": None, "max_event_bytes": 2048, "find_copies": True}
    source = src.open_source(engine.source_spec_from_params(params))
    try:
        [event] = source.read("0", None, 0, 10)
    finally:
        source.close()
    assert event.event is None and "above max_event_bytes 2048" in event.error


def test_a_different_worker_group_is_refused_until_reassigned(env):
    # e.g. an AWX slice whose groups[...] holds only its own hosts: refused before sending
    cluster, base, dummy = env
    code, dummy, dummy = call(["run"] + base + ["--no-throttle", "--quiet", "--time-budget", "0.001",
                                                "--worker-hosts", "w1,w2,w3", "--this-host", "w1"])
    sent_before = dict(cluster.applied)
    code, dummy, err = call(["run"] + base + ["--no-throttle", "--quiet", "--worker-hosts", "w2", "--this-host", "w2"])
    assert code == cli.EXIT_USAGE
    assert "['w1', 'w2', 'w3']" in err and "passes ['w2']" in err and "--reassign-workers" in err
    assert dict(cluster.applied) == sent_before
    code, dummy, err = call(["plan"] + base + ["--worker-hosts", "w1,w2", "--this-host", "w1"])
    assert code == cli.EXIT_USAGE and "passes ['w1', 'w2']" in err      # plans compare too
    # the operator shrinks the group on purpose: the new list is recorded and used
    code, dummy, err = call(["run"] + base + ["--no-throttle", "--quiet", "--reassign-workers",
                                              "--worker-hosts", "w1,w2", "--this-host", "w1"])
    assert code == cli.EXIT_DONE, err
    code, dummy, err = call(["run"] + base + ["--no-throttle", "--quiet", "--worker-hosts", "w2,w1", "--this-host", "w2"])
    assert code == cli.EXIT_STOPPED, err                                 # order does not matter;
    assert "h-1-0010" in err and sorted(cluster.applied) == ["0", "1"]   # w2's partition ran to its bad row


def test_no_credential_in_any_output(env, monkeypatch):
    """The token, a DSN's password and the environment's secrets are masked in the progress
    line, an error message and the resume hint (which says to pass them again)."""
    cluster, base, dummy = env
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
    monkeypatch.setenv("PGPASSWORD", "pg-env-secret-9")
    monkeypatch.setattr(rr.ReplayRun, "run", lambda self, time_budget_s=None: dict(
        self.progress.snapshot(), done=False, interrupted=False, error="lost http://ops:url-s3cret-7@cp.example",
        aborted=None, stopped=[], warnings=["PGPASSWORD is pg-env-secret-9"], run_id="r1"))
    code, out, err = call(["run"] + base + ["--token", "tok-very-secret-1", "--url", "https://ops:url-s3cret-7@cp:8443",
                                            "--time-budget", "5"])
    assert code == cli.EXIT_FAILED, err
    for secret in ("tok-very-secret-1", "url-s3cret-7", "pg-env-secret-9"):
        assert secret not in out + err
    assert "resume with:" in err and "--token ********" in err and "pass them again" in err


def test_a_dsn_password_is_a_credential_of_the_command_line():
    args = cli.build_parser().parse_args(["run", "--run-id", "r1", "--source-dsn", "host=db password='se cret-1'",
                                          "--cursor-dsn", "postgresql://replay:c-s3cret-2@db/cursors"])
    redactor = cli.credentials_of(args, environ={})
    shown = redactor.text("source host=db password='se cret-1', store postgresql://replay:c-s3cret-2@db/cursors")
    assert "se cret-1" not in shown and "c-s3cret-2" not in shown
