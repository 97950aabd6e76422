"""The shared client's modules driven through ansible-playbook against a real lab.

cluster_state_info, readiness_info (reading and waiting), metrics_info, audit (check mode ->
write -> idempotent rerun) and audit_info, on the spec dialect and the reference dialect.
The tasks are the targets under targets/ (run_target.yml runs them).
"""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient


def admin(lab):
    """A client with the lab's admin token, for setting faults."""
    return CeptraClient(lab.url, token=lab.tokens["admin"])


def test_read_only_modules_against_the_lab(lab, lab_vars, run_target):
    result = run_target("info_read_only", lab_vars)
    assert result.rc == 0, result.stdout + result.stderr
    state = result.results["state"]
    assert state["changed"] is False
    assert state["partition_ids"] == ["0", "1", "2", "3"]
    assert state["cluster"]["partitions"] == 4
    assert all("applied_index" in part for part in state["partitions"])
    readiness = result.results["readiness"]
    assert readiness["ready"] is True and readiness["condition_met"] is True
    assert set(readiness["readiness"]["partitions"]) == {"0", "1", "2", "3"}
    metrics = result.results["metrics"]
    assert set(metrics["partitions"]) == {"0", "1", "2", "3"}
    assert all(set(entry) == {"apply_lag_ms", "replication_lag_ms"} for entry in metrics["partitions"].values())
    assert metrics["cluster"] == {"ceptra_ready_partitions_ratio": 1.0}
    assert result.results["one partition"]["partition_ids"] == ["2"]


def test_readiness_wait_reports_what_is_not_ready_then_clears(lab, lab_vars, run_target):
    client = admin(lab)
    client.request("POST", "test_faults", body={"part_id": "1", "replication_lag_ms": 900})
    try:
        result = run_target("readiness_lag_times_out", lab_vars)
        assert result.rc != 0
        failed = result.results["wait for lag to clear"]
        assert failed["condition_met"] is False
        assert "partition 1 still reports replication_lag" in failed["msg"]
        assert "replication_lag_ms=900" in failed["msg"]
        assert failed["not_ready_partitions"] == ["1"]
    finally:
        client.request("POST", "test_faults", body={"part_id": "1", "replication_lag_ms": 0})
    result = run_target("readiness_lag_clears", lab_vars)
    assert result.rc == 0, result.stdout + result.stderr
    assert result.results["wait for lag to clear"]["condition_met"] is True
    assert result.results["jmespath wait"]["readiness"]["partitions"]["1"]["ready"] is True


def test_audit_check_mode_write_and_idempotent_rerun(lab, lab_vars, run_target):
    extravars = dict(lab_vars, rid="INC-4711-start")
    checked = run_target("audit_record", extravars, check=True, diff=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    assert checked.results["record"]["changed"] is True
    assert checked.results["read back"]["count"] == 0  # check mode wrote nothing
    assert "INC-4711" in checked.stdout  # the diff shows the record that would be written

    real = run_target("audit_record", extravars)
    assert real.rc == 0, real.stdout + real.stderr
    assert real.results["record"]["changed"] is True
    record = real.results["record"]["record"]
    assert record["actor"] == "spiffe://ceptra.lab/role/operator"
    assert record["details"] == {"incident": "INC-4711", "partitions": ["3"], "record_id": "INC-4711-start"}
    assert [r["id"] for r in real.results["read back"]["records"]] == [record["id"]]

    again = run_target("audit_record", extravars)
    assert again.rc == 0
    assert again.results["record"]["changed"] is False
    assert again.results["read back"]["count"] == 1


def test_audit_info_filters_on_lab_records(lab, lab_vars, run_target):
    admin(lab).request("POST", "test_outage", body={"part_ids": ["2"], "duration_ms": 50})
    result = run_target("audit_info_filters", lab_vars)
    assert result.rc == 0, result.stdout + result.stderr
    outages = result.results["outages"]["records"]
    assert outages and outages[-1]["details"]["part_ids"] == ["2"]
    assert result.results["by admin"]["count"] == 1
    assert result.results["future"]["count"] == 0


@pytest.mark.parametrize("dialect", ["reference"])
def test_reference_dialect_reads_the_same(lab_factory, run_target, dialect):
    ref = lab_factory(partitions=2, extra_args=["--dialect", dialect])
    result = run_target("info_reference_dialect", {"ceptra_url": ref.url, "ceptra_token": ref.tokens["observer"]})
    assert result.rc == 0, result.stdout + result.stderr
    readiness = result.results["readiness"]["readiness"]
    assert readiness["threshold"] == {"healthy_partition_ratio": 0.99}
    assert set(readiness["partitions"]) == {"0", "1"}
    assert all("apply_lag_ms" in p["metrics"] for p in readiness["partitions"].values())
    metrics = result.results["metrics"]
    assert set(metrics["partitions"]) == {"0", "1"}
    assert metrics["cluster"] == {"ceptra_ready_partitions_ratio": 1.0}
