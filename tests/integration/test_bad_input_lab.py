"""Bad input and secrets through ansible-playbook against the lab (issue 11, module side).

- each input that used to crash a module (a malformed url, a validity window past year 9999,
  bundle content that is a number) and each knob above its bound is a clean ``fatal`` with a
  message, no traceback, and the cluster's config unchanged;
- a wait for a partition that does not exist ends on the first read, naming the partitions
  that exist (the task's own deadline, wait_timeout 5, is never reached); metrics_info says so;
- a -vvv replay with passwords in both DSNs, userinfo in the Pushgateway URL and a token shows
  none of them: not in the output, not in the audit callback's log.
"""

import json
import uuid

from .replay_lab import START_NS, drop_postgres, history_rows, write_postgres

AUDITED = {"ANSIBLE_CALLBACKS_ENABLED": "task_results,ceptra.backfill.audit"}
# (ansible-core 2.19 adds "exception": "(traceback unavailable)" to every failed result: not a marker)
CRASH_MARKERS = ("Traceback", "MODULE FAILURE", "Module failed", "module_stderr")


def _assert_fatal(result, task, *needles):
    assert result.status(task) == "failed", (task, result.results[task])
    msg = result.results[task]["msg"]
    for needle in needles:
        assert needle in msg, (task, msg)
    record = json.dumps(result.results[task])
    for marker in CRASH_MARKERS:
        assert marker not in record, (task, marker, record)


def test_bad_input_fails_cleanly_and_changes_nothing(lab, lab_vars, run_target):
    result = run_target("bad_input", lab_vars)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr
    for marker in ("Traceback", "MODULE FAILURE", "module_stderr"):
        assert marker not in output
    # ansible-core 2.19 shows every fail_json as "Task failed: Module failed: <msg>"; after it
    # comes the module's own message here, never a crash report.
    messages = [r["result"].get("msg") for r in result.records if r["status"] == "failed"]
    shown = [line.split("Module failed: ", 1)[1] for line in output.splitlines() if "Module failed: " in line]
    assert len(shown) == len(messages) == 8 and all(text in messages for text in shown), shown
    _assert_fatal(result, "url with an open bracket", "url 'http://[::1' is not a valid URL (Invalid IPv6 URL)")
    _assert_fatal(result, "url with a port out of range", "url 'http://127.0.0.1:99999' is not a valid URL",
                  "Port out of range")
    _assert_fatal(result, "huge valid_for", "longer than an override may stay valid (at most 3650d")
    _assert_fatal(result, "huge expires_at", "is not a time between 1970 and 9999")
    _assert_fatal(result, "knob above its bound",
                  "correction_horizon_ms: 9223372036854775807 is out of bounds; allowed [0, 315360000000]")
    _assert_fatal(result, "bundle content that is a number", "bundle content must be the bundle as YAML or JSON text",
                  "got int 12345")
    # The first read answers: the message is not the 5 s deadline's "Timed out after ...".
    _assert_fatal(result, "wait for a partition that does not exist",
                  "partition(s) 99 do not exist: /readyz reports partitions 0, 1, 2, 3")
    assert result.results["wait for a partition that does not exist"]["unknown_partitions"] == ["99"]
    _assert_fatal(result, "metrics of a partition that does not exist",
                  "partition(s) 99 do not exist: /metrics reports partitions 0, 1, 2, 3")
    before, after = result.results["config before"], result.results["config after"]
    assert after["config_version"] == before["config_version"] and after["config"] == before["config"]


def _credentialed_dsns(pg_dsn):
    """The test database as a key/value DSN and as a URL, each with a password (trust auth ignores it)."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(pg_dsn)
    host, port, dbname, user = (info.get("host", "127.0.0.1"), info.get("port", "5432"), info["dbname"],
                                info.get("user", "postgres"))
    source = "host=%s port=%s dbname=%s user=%s password=src-pw-4711" % (host, port, dbname, user)
    cursor = "postgresql://%s:cur-pw-4711@%s:%s/%s" % (user, host, port, dbname)
    return source, cursor


def test_vvv_replay_shows_no_credential(lab, run_target, pg_dsn, tmp_path):
    table = "sec_%s" % uuid.uuid4().hex[:8]
    write_postgres(pg_dsn, table, history_rows(2, 50, START_NS))
    source_dsn, cursor_dsn = _credentialed_dsns(pg_dsn)
    log = tmp_path / "audit.jsonl"
    token = lab.tokens["operator"]
    secrets = ("src-pw-4711", "cur-pw-4711", "gw-user:gw-pw-4711", "gw-pw-4711", token)
    try:
        result = run_target("replay_secrets", {
            "ceptra_url": lab.url, "ceptra_token": token, "source_dsn": source_dsn, "cursor_dsn": cursor_dsn,
            "table": table, "run_id": table, "pushgateway_url": "http://gw-user:gw-pw-4711@127.0.0.1:1"},
            verbosity=3, env=dict(AUDITED, CEPTRA_AUDIT_LOG=str(log)))
    finally:
        drop_postgres(pg_dsn, table, table + "_cursors")
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "ESTABLISH LOCAL CONNECTION" in result.stdout           # really -vvv
    replay = result.results["replay"]
    assert replay["done"] and replay["events_done"] == 100
    # the failed push is reported, its URL masked
    assert any("could not publish replay metrics" in w for w in replay["warnings"]), replay["warnings"]
    assert result.results["progress"]["done"] is True
    assert result.status("a DSN the driver cannot parse (its error quotes the DSN)") == "failed"
    # the module arguments Ansible prints at -vvv are there, masked
    assert "\"dsn\": \"host=" in result.stdout and "password=********" in result.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["task"] for r in records if r["event"] == "task"][-3:] == [
        "replay", "progress", "a DSN the driver cannot parse (its error quotes the DSN)"]
    for secret in secrets:
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr), ("audit log", log.read_text()),
                           ("task results", json.dumps(result.records))):
            assert secret not in text, (secret, name)
