"""readiness_info: reading and every wait condition, against a scripted server."""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.modules import readiness_info

from ..test_support.http_server import Reply


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


def args(server, **extra):
    base = {"url": server.url, "token": "unit-test-token", "wait_interval": 0.01, "wait_timeout": 5}
    base.update(extra)
    return base


def test_reads_503_document_once(server, run_module):
    server.on("GET", "/readyz", Reply(503, readyz({"0", "1"})))
    failed, result = run_module(readiness_info, args(server))
    assert not failed and result["changed"] is False
    assert result["ready"] is False and result["not_ready_partitions"] == ["2", "3"]
    assert result["readiness"]["http_status"] == 503 and result["polls"] == 1


def test_wait_for_ready_polls_until_ready(server, run_module):
    server.on("GET", "/readyz", [Reply(503, readyz({"0"})), Reply(503, readyz({"0", "1", "2"})),
                                 Reply(200, readyz({"0", "1", "2", "3"}))])
    failed, result = run_module(readiness_info, args(server, wait_for="ready"))
    assert not failed and result["ready"] is True and result["condition_met"] is True
    assert result["polls"] == 3


def test_wait_for_ready_times_out_naming_what_is_not_ready(server, run_module):
    body = readyz({"0", "1", "2"}, reasons={"3": ["warmup", "apply_lag"]})
    server.on("GET", "/readyz", Reply(503, body))
    failed, result = run_module(readiness_info, args(server, wait_for="ready", wait_timeout=0))
    assert failed and result["condition_met"] is False
    assert result["msg"].startswith("Timed out after")
    assert "waiting for the cluster to be ready" in result["msg"]
    assert "partition 3: warmup, apply_lag (apply_lag_ms=340, replication_lag_ms=3)" in result["msg"]
    assert "cluster: insufficient_healthy_partitions" in result["msg"]


def test_partitions_ready_only_looks_at_the_given_partitions(server, run_module):
    server.on("GET", "/readyz", Reply(503, readyz({"0", "2"})))
    failed, result = run_module(readiness_info, args(server, wait_for="partitions_ready", partitions=["0", "2"]))
    assert not failed and result["condition_met"] is True and result["ready"] is False
    failed, result = run_module(readiness_info,
                                args(server, wait_for="partitions_ready", partitions=["1", "2"], wait_timeout=0))
    assert failed and "partitions 1, 2 to be ready" in result["msg"] and "partition 1: warmup" in result["msg"]
    assert "partition 2" not in result["msg"].split(":", 1)[1].replace("partitions 1, 2", "")


def test_reasons_clear_accepts_reference_names(server, run_module):
    body = readyz({"0", "1", "2"}, reasons={"3": ["warmup"]})
    server.on("GET", "/readyz", Reply(503, body))
    failed, result = run_module(readiness_info,
                                args(server, wait_for="reasons_clear", reasons=["apply_lag_exceeded"]))
    assert not failed and result["condition_met"] is True
    failed, result = run_module(readiness_info,
                                args(server, wait_for="reasons_clear", reasons=["warmup_pending"], wait_timeout=0))
    assert failed and "partition 3 still reports warmup" in result["msg"]


def test_reasons_clear_then_met_after_lag_drops(server, run_module):
    lagging = readyz({"0", "1", "2"}, reasons={"3": ["apply_lag"]})
    server.on("GET", "/readyz", [Reply(503, lagging), Reply(200, readyz({"0", "1", "2", "3"}))])
    failed, result = run_module(readiness_info,
                                args(server, wait_for="reasons_clear", reasons=["apply_lag"], partitions=["3"]))
    assert not failed and result["polls"] == 2


def test_jmespath_condition(server, run_module):
    server.on("GET", "/readyz", [Reply(503, readyz({"0"})), Reply(503, readyz({"0", "1"}))])
    expr = "partitions.\"1\".ready"
    failed, result = run_module(readiness_info, args(server, wait_for="jmespath", jmespath=expr))
    assert not failed and result["polls"] == 2
    server.on("GET", "/readyz", Reply(503, readyz({"0"})))
    failed, result = run_module(readiness_info,
                                args(server, wait_for="jmespath", jmespath="partition_ready_ratio > `0.5`", wait_timeout=0))
    assert failed and "is still false (it evaluates to False)" in result["msg"]


def test_bad_jmespath_is_reported_before_any_call(server, run_module):
    failed, result = run_module(readiness_info, args(server, wait_for="jmespath", jmespath="partitions.[["))
    assert failed and "is not valid" in result["msg"]
    assert server.calls() == []


def test_missing_jmespath_library_is_reported(server, run_module, monkeypatch):
    monkeypatch.setattr(readiness_info, "jmespath", None)
    monkeypatch.setattr(readiness_info, "JMESPATH_IMPORT_ERROR", "ImportError: no jmespath")
    failed, result = run_module(readiness_info, args(server, wait_for="jmespath", jmespath="ready"))
    assert failed and "jmespath" in result["msg"] and "required" in result["msg"].lower()


def test_transient_errors_while_waiting_are_survived_but_403_fails_fast(server, run_module):
    server.on("GET", "/readyz", [Reply(502, {"error": "gateway"}), Reply(503, {"error": "injected fault", "status": 503}),
                                 Reply(200, readyz({"0", "1", "2", "3"}))])
    failed, result = run_module(readiness_info, args(server, wait_for="ready", retries=0))
    assert not failed and result["ready"] is True and result["polls"] == 3
    server.on("GET", "/readyz", Reply(403, {"error": "identity x has role ingest; this call needs observer", "status": 403}))
    failed, result = run_module(readiness_info, args(server, wait_for="ready"))
    assert failed and "lacks role observer" in result["msg"] and len(server.calls()) == 4


def test_bad_wait_settings(server, run_module):
    failed, result = run_module(readiness_info, args(server, wait_interval=0))
    assert failed and "wait_interval" in result["msg"]
    failed, result = run_module(readiness_info, args(server, wait_for="jmespath"))
    assert failed and "jmespath" in result["msg"]


def test_waiting_on_a_partition_that_does_not_exist_fails_at_once(server, run_module):
    """The module's own deadline is 300 s; the answer comes from the first read, naming the partitions there are."""
    server.on("GET", "/readyz", Reply(503, readyz({"0"})))
    for wait_for in ("partitions_ready", "reasons_clear"):
        failed, result = run_module(readiness_info, args(server, wait_for=wait_for, partitions=["1", "9"],
                                                         wait_timeout=300))
        assert failed and result["condition_met"] is False and result["unknown_partitions"] == ["9"]
        assert result["msg"] == ("Could not read the cluster readiness (/readyz): partition(s) 9 do not exist: "
                                 "/readyz reports partitions 0, 1, 2, 3; fix the partition ids")
    assert len(server.calls()) == 2     # one read per task: nothing was waited for
