"""readiness_info: reading and every wait condition, against a scripted server."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "module_utils"))

from ansible_collections.ceptra.backfill.plugins.modules import readiness_info  # noqa: E402
from test_client_fakeserver import FakeServer, Reply, run_module  # noqa: E402


def readyz(ready_parts, reasons=None, threshold=0.99):
    """A spec-shaped /readyz body for partitions 0..3; ``reasons`` maps part_id -> reasons."""
    reasons = reasons or {}
    partitions = {}
    for pid in ("0", "1", "2", "3"):
        these = reasons.get(pid, [] if pid in ready_parts else ["warmup"])
        partitions[pid] = {"ready": pid in ready_parts, "reasons": these,
                           "metrics": {"apply_lag_ms": 340 if "apply_lag" in these else 5, "replication_lag_ms": 3}}
    ratio = len(ready_parts) / 4.0
    return {"ready": ratio >= threshold, "threshold": {"healthy_partition_ratio": threshold},
            "reasons": [] if ratio >= threshold else ["insufficient_healthy_partitions"], "partitions": partitions}


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def args(server, **extra):
    base = {"url": server.url, "token": "unit-test-token", "wait_interval": 0.01, "wait_timeout": 5}
    base.update(extra)
    return base


def test_reads_503_document_once(server, capsys):
    server.on("GET", "/readyz", Reply(503, readyz({"0", "1"})))
    code, result = run_module(readiness_info.main, args(server), capsys)
    assert code == 0 and result["changed"] is False
    assert result["ready"] is False and result["not_ready_partitions"] == ["2", "3"]
    assert result["readiness"]["http_status"] == 503 and result["polls"] == 1


def test_wait_for_ready_polls_until_ready(server, capsys):
    server.on("GET", "/readyz", [Reply(503, readyz({"0"})), Reply(503, readyz({"0", "1", "2"})),
                                 Reply(200, readyz({"0", "1", "2", "3"}))])
    code, result = run_module(readiness_info.main, args(server, wait_for="ready"), capsys)
    assert code == 0 and result["ready"] is True and result["condition_met"] is True
    assert result["polls"] == 3


def test_wait_for_ready_times_out_naming_what_is_not_ready(server, capsys):
    body = readyz({"0", "1", "2"}, reasons={"3": ["warmup", "apply_lag"]})
    server.on("GET", "/readyz", Reply(503, body))
    code, result = run_module(readiness_info.main, args(server, wait_for="ready", wait_timeout=0), capsys)
    assert code == 1 and result["condition_met"] is False
    assert result["msg"].startswith("Timed out after")
    assert "waiting for the cluster to be ready" in result["msg"]
    assert "partition 3: warmup, apply_lag (apply_lag_ms=340, replication_lag_ms=3)" in result["msg"]
    assert "cluster: insufficient_healthy_partitions" in result["msg"]


def test_partitions_ready_only_looks_at_the_given_partitions(server, capsys):
    server.on("GET", "/readyz", Reply(503, readyz({"0", "2"})))
    code, result = run_module(readiness_info.main, args(server, wait_for="partitions_ready", partitions=["0", "2"]), capsys)
    assert code == 0 and result["condition_met"] is True and result["ready"] is False
    code, result = run_module(readiness_info.main,
                              args(server, wait_for="partitions_ready", partitions=["1", "2"], wait_timeout=0), capsys)
    assert code == 1 and "partitions 1, 2 to be ready" in result["msg"] and "partition 1: warmup" in result["msg"]
    assert "partition 2" not in result["msg"].split(":", 1)[1].replace("partitions 1, 2", "")


def test_reasons_clear_accepts_reference_names(server, capsys):
    body = readyz({"0", "1", "2"}, reasons={"3": ["warmup"]})
    server.on("GET", "/readyz", Reply(503, body))
    code, result = run_module(readiness_info.main,
                              args(server, wait_for="reasons_clear", reasons=["apply_lag_exceeded"]), capsys)
    assert code == 0 and result["condition_met"] is True
    code, result = run_module(readiness_info.main,
                              args(server, wait_for="reasons_clear", reasons=["warmup_pending"], wait_timeout=0), capsys)
    assert code == 1 and "partition 3 still reports warmup" in result["msg"]


def test_reasons_clear_then_met_after_lag_drops(server, capsys):
    lagging = readyz({"0", "1", "2"}, reasons={"3": ["apply_lag"]})
    server.on("GET", "/readyz", [Reply(503, lagging), Reply(200, readyz({"0", "1", "2", "3"}))])
    code, result = run_module(readiness_info.main,
                              args(server, wait_for="reasons_clear", reasons=["apply_lag"], partitions=["3"]), capsys)
    assert code == 0 and result["polls"] == 2


def test_jmespath_condition(server, capsys):
    server.on("GET", "/readyz", [Reply(503, readyz({"0"})), Reply(503, readyz({"0", "1"}))])
    expr = "partitions.\"1\".ready"
    code, result = run_module(readiness_info.main, args(server, wait_for="jmespath", jmespath=expr), capsys)
    assert code == 0 and result["polls"] == 2
    server.on("GET", "/readyz", Reply(503, readyz({"0"})))
    code, result = run_module(readiness_info.main,
                              args(server, wait_for="jmespath", jmespath="partition_ready_ratio > `0.5`", wait_timeout=0),
                              capsys)
    assert code == 1 and "is still false (it evaluates to False)" in result["msg"]


def test_bad_jmespath_is_reported_before_any_call(server, capsys):
    code, result = run_module(readiness_info.main, args(server, wait_for="jmespath", jmespath="partitions.[["), capsys)
    assert code == 1 and "is not valid" in result["msg"]
    assert server.calls() == []


def test_missing_jmespath_library_is_reported(server, capsys, monkeypatch):
    monkeypatch.setattr(readiness_info, "jmespath", None)
    monkeypatch.setattr(readiness_info, "JMESPATH_IMPORT_ERROR", "ImportError: no jmespath")
    code, result = run_module(readiness_info.main, args(server, wait_for="jmespath", jmespath="ready"), capsys)
    assert code == 1 and "jmespath" in result["msg"] and "required" in result["msg"].lower()


def test_transient_errors_while_waiting_are_survived_but_403_fails_fast(server, capsys):
    server.on("GET", "/readyz", [Reply(502, {"error": "gateway"}), Reply(503, {"error": "injected fault", "status": 503}),
                                 Reply(200, readyz({"0", "1", "2", "3"}))])
    code, result = run_module(readiness_info.main, args(server, wait_for="ready", retries=0), capsys)
    assert code == 0 and result["ready"] is True and result["polls"] == 3
    server.on("GET", "/readyz", Reply(403, {"error": "identity x has role ingest; this call needs observer", "status": 403}))
    code, result = run_module(readiness_info.main, args(server, wait_for="ready"), capsys)
    assert code == 1 and "lacks role observer" in result["msg"] and len(server.calls()) == 4


def test_bad_wait_settings(server, capsys):
    code, result = run_module(readiness_info.main, args(server, wait_interval=0), capsys)
    assert code == 1 and "wait_interval" in result["msg"]
    code, result = run_module(readiness_info.main, args(server, wait_for="jmespath"), capsys)
    assert code == 1 and "jmespath" in result["msg"]
