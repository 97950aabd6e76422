"""Job templates of extensions/awx run as AWX runs them (ansible-runner, see awx_jobs.py),
against a lab that speaks mutual TLS only, with the certificates of ``ceptra-lab certs``
reaching the modules through the "CEPtra control plane" credential's injectors.

The sliced replay-workers template runs as 3 runner jobs at once, each with its slice's
inventory: together they replay every partition exactly once, each slice its own share, and
the audit log names the AWX operator.
"""

import contextlib
import io
import json
import os
import threading
import time
import uuid

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_chain import verify_chain
from ceptra_lab import traffic
from ceptra_lab.traffic import seed_history

from . import awx_jobs
from .runbook_support.faults import start_outage, wait_outage_over
from .runbook_support.labs import BUNDLE as RUNBOOK_BUNDLE, activate_bundle

REPO = awx_jobs.REPO
BUNDLE = os.path.join(os.path.dirname(REPO), "shared", "reference", "bundles", "gaming_cheat_detection.yaml")
SLICED = "CEPtra replay workers (sliced)"
CREDENTIAL = awx_jobs.CREDENTIAL
REPLAY_TASK = "Replay the window in slices until every partition is done"   # roles/history_replay
PARTITIONS = 8


@contextlib.contextmanager
def seeded_history(pg_dsn):
    """A seeded PostgreSQL history table and a cursor table name, dropped afterwards."""
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    tables = {"history": "awx_history_" + suffix, "cursors": "awx_cursors_" + suffix}
    tables["rows"] = seed_history(pg_dsn, partitions=PARTITIONS, events_per_partition=300, bundle=BUNDLE,
                                  duplicate_ratio=0.03, table=tables["history"])
    with psycopg.connect(pg_dsn) as conn:
        tables["distinct"] = conn.execute("SELECT COUNT(*) FROM (SELECT DISTINCT part_id, event_id FROM %s) d"
                                          % tables["history"]).fetchone()[0]
    try:
        yield tables
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for table in (tables["history"], tables["cursors"], tables["cursors"] + "_pause",
                          tables["cursors"] + "_workers"):
                conn.execute("DROP TABLE IF EXISTS %s" % table)


@pytest.fixture
def history(pg_dsn):
    """A seeded history of this test alone."""
    with seeded_history(pg_dsn) as tables:
        yield tables


def databases(pg_dsn, history):
    """The template's database extra vars, pointed at the test database."""
    return {"history_replay_source": {"type": "postgresql", "dsn": pg_dsn, "table": history["history"]},
            "history_replay_cursor_store": {"type": "postgresql", "dsn": pg_dsn, "table": history["cursors"]}}


def committed(lab):
    """Events the lab's partitions committed, summed."""
    status, dummy, state = lab.request("GET", "/v1/state", role="observer")
    assert status == 200, state
    return sum(p["commit_index"] for p in state["partitions"])


class ReplayWorkflowRun:
    """One run of the replay workflow (the sliced template in check mode on 3 slices, an approval,
    the sliced template for real on 3 slices) against one TLS lab; the tests below read it."""

    def __init__(self, lab, history, audit_log, inputs, nodes, asked, committed_at_approval):
        self.lab, self.history, self.audit_log, self.inputs = lab, history, audit_log, inputs
        self.nodes, self.asked, self.committed_at_approval = nodes, asked, committed_at_approval


@pytest.fixture(scope="module")
def replay_workflow(certs, pg_dsn, tmp_path_factory):
    """The replay workflow, run once for the module: its plan jobs are the check-mode jobs, its replay
    jobs the sliced replay; each test asserts on a part of what AWX would store of it."""
    from ceptra_lab.testing import LabProcess

    base = tmp_path_factory.mktemp("replay-workflow")
    audit_log = base / "volume" / "backfill-audit.jsonl"
    audit_log.parent.mkdir()
    with LabProcess(partitions=PARTITIONS, test_mode=True, tls_dir=str(certs)) as lab, \
            seeded_history(pg_dsn) as history:
        assert lab.url.startswith("https://")
        defs = awx_jobs.definitions()
        workflow = awx_jobs.find(defs, "controller_workflows", "CEPtra replay workers (plan, approve, replay)")
        inputs = awx_jobs.credential_inputs(lab, certs)
        asked, at_approval = [], []

        def approve(node):   # the operator looks at the plans; the lab has received nothing yet
            asked.append(node["approval_node"]["name"])
            at_approval.append(committed(lab))
            return True

        nodes = awx_jobs.run_workflow(str(base / "jobs"), workflow, defs, inputs, 5000, "alice",
                                      answers={"ceptra_incident_id": "INC-4711"}, extra_vars=databases(pg_dsn, history),
                                      approve=approve, extra_env={"CEPTRA_AUDIT_LOG": str(audit_log)})
        yield ReplayWorkflowRun(lab, history, audit_log, inputs, nodes, asked, at_approval)


@pytest.mark.postgres
def test_sliced_replay_template_replays_every_partition_once(replay_workflow):
    run = replay_workflow
    assert [(n.identifier, n.status) for n in run.nodes] == [("plan", "successful"), ("approve", "successful"),
                                                             ("replay", "successful")], \
        [job.stdout[-3000:] for n in run.nodes for job in n.jobs]
    jobs = run.nodes[2].jobs
    # one job per slice, each with only its own host, as AWX slices the inventory
    assert [job.hosts for job in jobs] == [["replay-worker-1"], ["replay-worker-2"], ["replay-worker-3"]]
    shares = {}
    for job in jobs:
        (host,) = job.hosts
        assert job.status == "successful" and job.rc == 0, job.stdout[-3000:]
        assert set(job.stats["ok"]) == {host} and not job.stats["failures"] and not job.stats["dark"]
        assert job.stats["changed"] == {host: 1}   # the replay sent events; the rest only reads
        (replayed,) = job.task_events(REPLAY_TASK)
        assert replayed["event_data"]["host"] == host
        result = replayed["event_data"]["res"]
        assert result["done"] is True and result["events_done"] == result["events_total"] > 0
        shares[host] = result["assigned_partitions"]
        # the progress is AWX's artifacts (set_stats of the history_replay role)
        artifacts = job.artifact_data()["ceptra_replay"]
        assert sorted(artifacts["partitions"]) == sorted(shares[host])
        assert int(artifacts["events_done"]) == result["events_done"]
        # the key and the token never reach the job output or its events
        blob = job.stdout + json.dumps(job.events)
        assert "PRIVATE KEY" not in blob and run.inputs[CREDENTIAL]["client_key"].splitlines()[1] not in blob

    assigned = [part for share in shares.values() for part in share]
    assert sorted(assigned, key=int) == [str(p) for p in range(PARTITIONS)]   # each partition in one slice
    assert sorted(len(share) for share in shares.values()) == [2, 3, 3]
    # every distinct historic event applied exactly once, over all slices
    assert committed(run.lab) == run.history["distinct"] < run.history["rows"]

    # the six slice jobs appended to one chain-verified audit log, each under its AWX job, as the operator
    report = verify_chain(str(run.audit_log))
    assert report["ok"], report["problems"]
    assert sorted(report["runs"]) == ["awx-job-%d" % job_id for job_id in (5011, 5012, 5013, 5021, 5022, 5023)]
    assert {entry["operator"] for entry in report["runs"].values()} == {"alice"}


@pytest.mark.postgres
def test_a_slice_without_the_complete_worker_list_sends_nothing(lab_factory, certs, history, pg_dsn, tmp_path):
    lab = lab_factory(partitions=PARTITIONS, test_mode=True, tls_dir=str(certs))
    defs = awx_jobs.definitions()
    template = dict(awx_jobs.find(defs, "controller_templates", SLICED))
    template["extra_vars"] = {k: v for k, v in template["extra_vars"].items() if k != "replay_workers_hosts"}
    run = awx_jobs.run_job(str(tmp_path / "jobs"), template, defs, awx_jobs.credential_inputs(lab, certs), 4200,
                           "bob", answers={"ceptra_incident_id": "INC-4712"}, extra_vars=databases(pg_dsn, history),
                           hosts=["replay-worker-2"], extra_env={"CEPTRA_AUDIT_LOG": str(tmp_path / "audit.jsonl")})
    assert run.status == "failed"
    (failed,) = [e for e in run.events if e["event"] == "runner_on_failed"]
    assert failed["event_data"]["task"] == "Gate: the complete worker list is given and holds this worker"
    assert "replay_workers_hosts" in failed["event_data"]["res"]["msg"]
    assert "each slice sees only" in failed["event_data"]["res"]["msg"]
    assert committed(lab) == 0


@pytest.mark.postgres
def test_job_type_check_gives_the_plan_and_sends_nothing(replay_workflow):
    plan = replay_workflow.nodes[0]
    assert plan.identifier == "plan" and len(plan.jobs) == 3
    # check mode reports what the run would change (the replay) and changes nothing
    assert replay_workflow.committed_at_approval == [0]
    for job, share in zip(plan.jobs, (["0", "3", "6"], ["1", "4", "7"], ["2", "5"])):
        (host,) = job.hosts
        assert job.status == "successful", job.stdout[-3000:]
        assert job.stats["changed"] == {host: 1} and set(job.stats["ok"]) == {host}
        (planned,) = job.task_events(REPLAY_TASK)   # check mode: one round, the plan
        result = planned["event_data"]["res"]
        assert result["assigned_partitions"] == share and result["plan"]["events_remaining"] > 0
        assert int(job.artifact_data()["ceptra_replay"]["events_total"]) == result["plan"]["events_remaining"]


@pytest.mark.postgres
def test_replay_workflow_plans_then_replays_after_approval(replay_workflow):
    run = replay_workflow
    assert run.asked == ["Approve the replay plan"]
    assert [(n.identifier, n.status) for n in run.nodes] == [("plan", "successful"), ("approve", "successful"),
                                                             ("replay", "successful")]
    planned = {job.hosts[0]: job.task_events(REPLAY_TASK)[0]["event_data"]["res"]["assigned_partitions"]
               for job in run.nodes[0].jobs}
    assert sorted(p for share in planned.values() for p in share) == sorted(str(p) for p in range(PARTITIONS))
    replayed = {job.hosts[0]: job.task_events(REPLAY_TASK)[0]["event_data"]["res"]["assigned_partitions"]
                for job in run.nodes[2].jobs}
    assert replayed == planned   # as planned and approved
    # the plans, summed over the workers, read every history row; the cluster applied each distinct event once
    planned_events = sum(job.task_events(REPLAY_TASK)[0]["event_data"]["res"]["plan"]["events_remaining"]
                         for job in run.nodes[0].jobs)
    assert planned_events == run.history["rows"] > committed(run.lab) == run.history["distinct"]


PARTIAL_WORKFLOW = "CEPtra partial recovery (recover, then verify or roll back)"
FULL_WORKFLOW = "CEPtra full recovery (recover, then verify or roll back)"
# (workflow, the source variables of its scenario, the task of the scenario that fails first)
FAILING = {
    "partial": (PARTIAL_WORKFLOW, "history_replay", "Gate: a missing window was found"),
    "full": (FULL_WORKFLOW, "full_recovery",
             "Plan the full recovery (partitions, start positions, events, dedup capacity, overrides)"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", sorted(FAILING))
def test_scenario_workflow_rolls_back_when_the_scenario_fails(lab_factory, certs, history, pg_dsn, tmp_path, scenario):
    # Nothing happened to the cluster: partial's discover gate finds no missing window, full's
    # plan finds no wiped partition, and the run fails there (survey defaults, credential
    # injection, mutual TLS); the workflow takes its failure path to the rollback, which reverts
    # the override an earlier, killed run of the same incident left staged.
    name, prefix, first_failure = FAILING[scenario]
    lab = lab_factory(partitions=PARTITIONS, test_mode=True, tls_dir=str(certs))
    leftover = "backfill-%s-INC-6000" % scenario
    before = stage_override(lab, certs, leftover, {"lateness_allowance_ms": 5400000})
    defs = awx_jobs.definitions()
    workflow = awx_jobs.find(defs, "controller_workflows", name)
    audit_log = tmp_path / "audit.jsonl"
    sources = {prefix + "_source": {"type": "postgresql", "dsn": pg_dsn, "table": history["history"]},
               prefix + "_cursor_store": {"type": "postgresql", "dsn": pg_dsn, "table": history["cursors"]}}
    nodes = awx_jobs.run_workflow(str(tmp_path / "jobs"), workflow, defs, awx_jobs.credential_inputs(lab, certs), 6000, "erin",
                                  answers={"ceptra_incident_id": "INC-6000"}, extra_vars=sources,
                                  extra_env={"CEPTRA_AUDIT_LOG": str(audit_log)})
    assert [(n.identifier, n.status) for n in nodes] == [("recover", "failed"), ("rollback", "successful")]
    (recover,) = nodes[0].jobs
    failed = [e["event_data"]["task"] for e in recover.events if e["event"] == "runner_on_failed"]
    assert failed[0] == first_failure and failed[-1] == "Fail naming the gate"
    run = recover.artifact_data()["ceptra_run"]
    assert run["outcome"] == "failed" and run["run_id"] == "%s-INC-6000" % scenario
    (rollback,) = nodes[1].jobs
    assert rollback.stats["failures"] == {} and set(rollback.stats["ok"]) == {"ops-runner-1"}
    # the rollback job worked on the scenario's run, which it found in the artifacts
    assert "%s-INC-6000" % scenario in json.dumps([e["event_data"].get("res") for e in rollback.events])
    # the failed run restored the override of its run id that a killed run had left: nothing was left to revert
    assert rollback.stats["changed"] == {}
    assert overrides_and_lateness(lab) == ({}, before["lateness_allowance_ms"])
    report = verify_chain(str(audit_log))
    assert report["ok"], report["problems"]
    assert {run["operator"] for run in report["runs"].values()} == {"erin"}
    assert len(report["runs"]) == 2   # the scenario job and the rollback job


def test_rollback_template_alone_reverts_the_override_a_killed_run_left(lab_factory, certs, tmp_path):
    # A run killed mid-way leaves its override (a cancelled workflow runs no further node): the
    # operator launches the rollback template alone and names the run in its survey.
    lab = lab_factory(partitions=PARTITIONS, test_mode=True, tls_dir=str(certs))
    before = stage_override(lab, certs, "backfill-full-INC-6200", {"lateness_allowance_ms": 5400000})
    stage_override(lab, certs, "backfill-partial-INC-6200", {"correction_horizon_ms": 9000000})
    defs = awx_jobs.definitions()
    template = awx_jobs.find(defs, "controller_templates", "CEPtra rollback")
    run = awx_jobs.run_job(str(tmp_path / "jobs"), template, defs, awx_jobs.credential_inputs(lab, certs), 6200, "erin",
                           answers={"ceptra_incident_id": "INC-6200", "ceptra_run_id": "full-INC-6200"},
                           extra_env={"CEPTRA_AUDIT_LOG": str(tmp_path / "audit.jsonl")})
    assert run.status == "successful" and run.stats["changed"] == {"ops-runner-1": 1}, run.stdout[-3000:]
    ledger, lateness = overrides_and_lateness(lab)
    assert sorted(ledger) == ["backfill-partial-INC-6200"]   # only the named run's override was reverted
    assert lateness == before["lateness_allowance_ms"]


def overrides_and_lateness(lab):
    """(the override ledger, the lateness allowance) of the lab's config."""
    status, dummy, body = lab.request("GET", "/v1/config", role="observer")
    assert status == 200, body
    return body["config"]["annotations"].get("ceptra.backfill/overrides", {}), body["config"]["lateness_allowance_ms"]


def stage_override(lab, certs, name, settings):
    """Stage the override ``name`` with the collection's config manager, over mutual TLS as the
    operator (what a scenario run killed before its rescue leaves behind); returns the config before."""
    from ansible_collections.ceptra.backfill.plugins.module_utils import _config_ledger as ledger
    from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
    from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import ConfigManager

    status, dummy, before = lab.request("GET", "/v1/config", role="observer")
    assert status == 200, before
    with CeptraClient(lab.url, client_cert=str(certs / "operator.pem"), client_key=str(certs / "operator-key.pem"),
                      ca_path=str(certs / "ca.pem")) as client:
        assert ConfigManager(client, actor="killed-run").stage(name, settings, ledger.Window(valid_for="2h"))["changed"]
    return before["config"]


def live_traffic_with_an_outage(lab, certs, archive, outage_parts, outage_ms=1500):
    """Live traffic over mutual TLS (as the operator) with an outage of ``outage_parts`` in the middle;
    every generated event, refused ones included, is archived in ``archive`` (the history)."""
    stop = threading.Event()
    worker = threading.Thread(target=traffic.live, daemon=True, kwargs=dict(
        url=lab.url, token=None, rate=200.0, duration=120.0, bundle=RUNBOOK_BUNDLE, partitions=lab.partitions,
        cacert=str(certs / "ca.pem"), cert=str(certs / "operator.pem"), key=str(certs / "operator-key.pem"),
        out=io.StringIO(), archive="sqlite:" + archive, classification_ratio=1.0, stop=stop))
    worker.start()
    try:
        time.sleep(1.0)
        start_outage(lab, outage_parts, outage_ms)
        wait_outage_over(lab, outage_parts)
        time.sleep(1.0)   # the archive holds the window's events
    finally:
        stop.set()
        worker.join(30)


@pytest.mark.slow
def test_partial_workflow_recovers_the_window_then_verifies(lab_factory, certs, tmp_path):
    lab = lab_factory(partitions=4, test_mode=True, tls_dir=str(certs))
    activate_bundle(lab)
    history_db = str(tmp_path / "history.sqlite")
    live_traffic_with_an_outage(lab, certs, history_db, ["1", "2"])
    defs = awx_jobs.definitions()
    workflow = awx_jobs.find(defs, "controller_workflows", PARTIAL_WORKFLOW)
    audit_log = tmp_path / "audit.jsonl"
    sources = {"history_replay_source": {"type": "sqlite", "path": history_db},
               "history_replay_cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.sqlite")}}
    nodes = awx_jobs.run_workflow(str(tmp_path / "jobs"), workflow, defs, awx_jobs.credential_inputs(lab, certs), 6100, "grace",
                                  answers={"ceptra_incident_id": "INC-6100"}, extra_vars=sources,
                                  extra_env={"CEPTRA_AUDIT_LOG": str(audit_log),
                                             "CEPTRA_REPORT_DIR": str(tmp_path / "reports"),
                                             "CEPTRA_HOLD_DIR": str(tmp_path)})
    assert [(n.identifier, n.status) for n in nodes] == [("recover", "successful"), ("verify", "successful")], \
        [job.stdout[-3000:] for n in nodes for job in n.jobs]
    (recover,) = nodes[0].jobs
    stats = recover.artifact_data()
    assert stats["ceptra_plan"]["partitions"] == ["1", "2"] and stats["ceptra_run"]["outcome"] == "completed"
    assert stats["ceptra_replay"]["events_done"] >= stats["ceptra_plan"]["events"] > 0
    progress = [e for e in recover.events if e["event"] == "runner_retry" or " p1: " in e.get("stdout", "")]
    assert progress   # the replay loop's per-partition progress reached the job's events
    # verify found the scenario's run through the artifacts the workflow passed down
    (verify,) = nodes[1].jobs
    assert verify.stats["failures"] == {}
    assert (tmp_path / "reports" / "verify-partial-INC-6100.json").is_file()
    report = verify_chain(str(audit_log))
    assert report["ok"], report["problems"]
    assert {run["operator"] for run in report["runs"].values()} == {"grace"}
