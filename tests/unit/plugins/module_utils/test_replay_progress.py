"""Replay progress: EWMA rate / ETA, Prometheus textfile, Pushgateway, JSONL audit, CP audit."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import audit as replay_audit
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import progress as pg

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import make_event


class Clock(object):
    t = 100.0

    def __call__(self):
        return self.t


def test_rate_eta_and_historic_lag():
    clock = Clock()
    tracker = pg.ProgressTracker(clock=clock)
    tracker.add("0", total=1000, target_ts_ns=10_000_000_000)
    for dummy in range(4):
        clock.t += 1.0
        tracker.record_batch("0", 100, 5000, (100,), last_ts_ns=4_000_000_000)
    snap = tracker.snapshot()
    part = snap["partitions"]["0"]
    assert part["events_done"] == 400 and part["bytes_done"] == 20000
    assert part["rate_eps"] == 100.0
    assert part["eta_s"] == 6.0
    assert part["historic_lag_s"] == 6.0
    assert snap["events_sent"] == 400


def test_progress_line_is_readable():
    clock = Clock()
    tracker = pg.ProgressTracker(clock=clock)
    tracker.add("0", total=200)
    tracker.add("10", total=100, done=100, status="done")
    clock.t += 1
    tracker.record_batch("0", 50, 100, (50,))
    tracker.update("0", status="running", apply_lag_ms=37.0)
    line = pg.format_progress_line(tracker.snapshot())
    assert line.startswith("replay 150/300 (50.0%)")
    assert "p0 50/200 lag 37ms" in line and "p10 100/100 done" in line
    assert line.index("p0 ") < line.index("p10 ")   # numeric partition order


def test_metrics_textfile_is_written_atomically(tmp_path):
    tracker = pg.ProgressTracker(clock=Clock())
    tracker.add("3", total=10, done=10, bytes_done=999, status="done")
    text = pg.render_metrics(tracker.snapshot(), 'run"1')
    path = tmp_path / "replay.prom"
    pg.write_metrics_textfile(str(path), text)
    content = path.read_text()
    assert 'replay_events_total{run_id="run\\"1",part_id="3"} 10' in content
    assert 'replay_bytes_total{run_id="run\\"1",part_id="3"} 999' in content
    assert 'replay_partition_lag_seconds{run_id="run\\"1",part_id="3"} 0.000' in content
    assert "# TYPE replay_events_total counter" in content
    assert [p.name for p in tmp_path.iterdir()] == ["replay.prom"]   # no temp file left


def test_push_to_pushgateway_puts_text():
    received = {}

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            received["path"] = self.path
            received["body"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        status = pg.push_metrics("http://127.0.0.1:%d" % server.server_port, "r1", "replay_events_total 1\n")
    finally:
        thread.join(5)
        server.server_close()
    assert status == 200
    assert received["path"] == "/metrics/job/ceptra_replay/run_id/r1"
    assert received["body"] == "replay_events_total 1\n"


def test_batch_audit_log_appends_one_record_per_batch(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')
    log = replay_audit.BatchAuditLog(str(path), "run-9", "bob@host")
    log.record("2", make_event("2", 5), make_event("2", 9), 5, 600, 1.5, "acked", duplicates=0)
    log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": true}'
    rec = json.loads(lines[1])
    assert rec["run_id"] == "run-9" and rec["part_id"] == "2" and rec["operator"] == "bob@host"
    assert rec["first_position"] == [5] and rec["last_position"] == [9]
    assert rec["seq_first"] == 5 and rec["seq_last"] == 9 and rec["events"] == 5 and rec["bytes"] == 600
    assert rec["outcome"] == "acked" and rec["started_at"] == 1.5 and rec["ts"] > 0


def test_operator_identity_prefers_option_then_env(monkeypatch):
    monkeypatch.delenv("CEPTRA_ACTOR", raising=False)
    monkeypatch.setenv("CEPTRA_OPERATOR", "ops-team")
    assert operator_identity("carol") == "carol"
    assert operator_identity(None) == "ops-team"
    monkeypatch.delenv("CEPTRA_OPERATOR")
    assert "@" in operator_identity(None)


def test_cp_audit_failure_is_a_warning():
    warnings = []
    assert not replay_audit.cp_audit(ControlPlane(role="ingest"), {"event": "run_start"}, warnings)
    assert "run_start" in warnings[0] and "lacks role operator" in warnings[0]
