"""What an audit record holds: operator identity order, AWX job, redaction, progress figures."""

from __future__ import annotations

import getpass
import socket

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_record as rec
from ansible_collections.ceptra.backfill.plugins.module_utils._progress_view import compact_progress, progress_lines

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nq8Zl0Yw==\n-----END PRIVATE KEY-----"


def test_identity_order_awx_user_first():
    everything = {"awx_user_name": "alice", "tower_user_name": "bob", "awx_schedule_name": "nightly"}
    assert rec.operator_from_vars(everything, environ={}) == "alice"
    del everything["awx_user_name"]
    assert rec.operator_from_vars(everything, environ={}) == "bob"
    del everything["tower_user_name"]
    assert rec.operator_from_vars(everything, environ={}) == "schedule:nightly"
    assert rec.operator_from_vars({"tower_schedule_name": "weekly"}, environ={}) == "schedule:weekly"


def test_identity_falls_back_to_the_local_identity():
    assert rec.operator_from_vars({}, environ={"CEPTRA_ACTOR": "ops-bot"}) == "ops-bot"
    assert rec.operator_from_vars({"awx_user_name": ""}, environ={}) == "%s@%s" % (getpass.getuser(), socket.gethostname())


def test_awx_job_meta():
    job = rec.awx_job_from_vars({"awx_job_id": 42, "tower_job_template_name": "Partial recovery",
                                 "awx_workflow_job_id": 40, "awx_schedule_name": "nightly", "unrelated": "x"})
    assert job == {"job_id": 42, "job_template_name": "Partial recovery", "workflow_job_id": 40,
                   "schedule_name": "nightly"}
    assert rec.awx_job_from_vars({"tower_job_id": 7})["job_id"] == 7
    assert rec.awx_job_from_vars({}) == {}


def test_redaction_patterns():
    red = rec.Redactor()
    assert red.text("connect host=db password=s3cr3t! user=u") == "connect host=db password=******** user=u"
    assert red.text("dsn password='a b c' port=5") == "dsn password=******** port=5"
    assert red.text("GET https://ops:hunter22@cp.example/v1") == "GET https://ops:********@cp.example/v1"
    assert "lab-operator" not in red.text("Authorization: Bearer lab-operator")
    assert "tok123456" not in red.text('{"token": "tok123456"}')
    assert red.text("key:\n" + PEM + "\nend") == "key:\n[private key removed]\nend"
    assert red.text("https://127.0.0.1:8443/v1/state") == "https://127.0.0.1:8443/v1/state"


def test_redaction_of_known_secret_values():
    red = rec.Redactor.from_context({"ceptra_token": "tok-very-secret", "db": {"password": "pw-nested-1"},
                                     "incident": "INC-4711"},
                                    environ={"CEPTRA_TOKEN": "env-token-xyz", "PGPASSWORD": "pg-pass-1"})
    text = red.text("tok-very-secret env-token-xyz pg-pass-1 pw-nested-1 INC-4711")
    assert text == "******** ******** ******** ******** INC-4711"


def test_failure_message_is_short_and_redacted():
    red = rec.Redactor()
    msg = rec.failure_message({"msg": "x" * 1000 + " password=abc"}, red)
    assert len(msg) == rec.MSG_MAX and msg.endswith("...")
    assert rec.failure_message({"results": [{"failed": False}, {"failed": True, "msg": "item  two\nfailed"}]},
                               red) == "item two failed"
    assert rec.failure_message({"stderr": "boom password=p1"}, red) == "boom password=********"
    assert rec.failure_message({}, red) is None


def test_task_record_fields():
    red = rec.Redactor()
    record = rec.task_record("failed", "Recover", "ceptra.backfill.replay", "Replay", "w1", "ceptra.backfill.historic_replay",
                             {"changed": True, "msg": "password=x failed", "results": [1, 2]}, check_mode=False,
                             no_log=False, redactor=red, duration_ms=12.7, ignore_errors=True)
    assert record == {"event": "task", "status": "failed", "play": "Recover", "role": "ceptra.backfill.replay",
                      "task": "Replay", "host": "w1", "module": "ceptra.backfill.historic_replay", "changed": True,
                      "failed": True, "skipped": False, "unreachable": False, "ignored": True, "check_mode": False,
                      "no_log": False, "msg": "password=******** failed", "duration_ms": 12, "items": 2}


def test_no_log_task_records_no_message_and_no_progress():
    result = {"censored": "hidden", "msg": PEM, "partitions": {"0": {"events_done": 1}}}
    record = rec.task_record("failed", "p", None, "t", "h", "m", result, check_mode=True, no_log=True,
                             redactor=rec.Redactor())
    assert record["msg"] is None and "progress" not in record and record["no_log"] and record["check_mode"]


def replay_result():
    return {"run_id": "inc-1", "done": False, "events_done": 150, "events_total": 400, "events_sent": 100,
            "rate_eps": 900.04, "eta_s": 3.2, "stopped": [{"message": "payload secret"}],
            "partitions": {
                "10": {"status": "running", "events_done": 50, "events_total": 200, "rate_eps": 400.0, "eta_s": 0.4,
                       "apply_lag_ms": 41.6, "replication_lag_ms": None, "report": {"message": "x"},
                       "position": [1, "h-1"]},
                "2": {"status": "done", "events_done": 100, "events_total": 200, "rate_eps": 500.0, "eta_s": 0.0,
                      "apply_lag_ms": 12, "replication_lag_ms": 3}}}


def test_compact_progress_keeps_only_figures():
    progress = compact_progress(replay_result())
    assert list(progress["partitions"]) == ["2", "10"]   # natural order
    assert progress["partitions"]["10"] == {"status": "running", "events_done": 50, "events_total": 200,
                                            "rate_eps": 400.0, "eta_s": 0.4, "apply_lag_ms": 41.6,
                                            "replication_lag_ms": None}
    assert "stopped" not in progress and progress["run_id"] == "inc-1" and progress["done"] is False
    assert compact_progress({"partitions": {"0": {"status": "x"}}}) is None
    assert compact_progress({"msg": "not a replay"}) is None


def test_progress_lines_one_per_partition():
    lines = progress_lines(compact_progress(replay_result()), host="w1", attempt=3)
    assert lines == [
        "[w1] replay inc-1 round 3: 150/400 (37.5%) 900 ev/s ETA 3s",
        "[w1]   replay inc-1 p2: 100/200 (50.0%) 500 ev/s ETA 0s apply lag 12 ms repl lag 3 ms done",
        "[w1]   replay inc-1 p10: 50/200 (25.0%) 400 ev/s ETA 0s apply lag 42 ms repl lag - running",
    ]
    assert progress_lines(None) == []
