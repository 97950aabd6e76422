"""The full-recovery and policy-deployment job templates of extensions/awx, run to success as AWX
runs them (ansible-runner, see awx_jobs.py) through their workflows: the scenario with its survey's
defaults (only the questions without one answered), then the verify template on its artifacts,
against a lab that speaks mutual TLS only, with the certificates of ``ceptra-lab certs`` reaching
the modules through the control-plane credential's injectors, live traffic on during the scenario.

The labs are the ones of test_scenario_full.py and test_scenario_policy.py (full_recovery_lab.py,
policy_lab.py), smaller: a scenario is correct when the lab's state afterwards equals a reference
lab that saw every event with no incident.
"""

import json
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_chain import verify_chain
from ceptra_lab.testing import append_stream

from . import awx_jobs
from .full_recovery_lab import LiveClient, RecoveryLabs, lab_json
from .policy_lab import V2, Live, archived_events, config_of, policy_lab, reference_lab, v2_metrics, write_archive
from .runbook_support.labs import lab_get

FULL_WORKFLOW = "CEPtra full recovery (recover, then verify or roll back)"
# what verify.yml's chain check says of each tampered copy
TAMPERED = {"edited": "line 4 (seq 4) was changed", "deleted": "1 record(s) were removed",
            "cut": "differs from the anchored one (hash"}
POLICY_WORKFLOW = "CEPtra policy deployment (plan, approve, deploy, then verify or roll back)"


def assert_secrets_kept_out(jobs, inputs, audit_log):
    """Neither a job's output and events nor the audit file hold the credential's key."""
    key_line = inputs[awx_jobs.CREDENTIAL]["client_key"].splitlines()[1]
    for blob in [job.stdout + json.dumps(job.events) for job in jobs] + [audit_log.read_text(encoding="utf-8")]:
        assert "PRIVATE KEY" not in blob and key_line not in blob


def assert_scenario_succeeded(nodes, identifiers, run_id, inputs, audit_log):
    """The workflow ran ``identifiers`` successfully; its first (scenario) job changed the cluster, completed
    the run ``run_id`` and kept the key out of its output and the audit file; returns that job and its artifacts."""
    assert [(n.identifier, n.status) for n in nodes] == [(i, "successful") for i in identifiers], \
        [job.stdout[-4000:] for n in nodes for job in n.jobs]
    (job,) = nodes[0].jobs
    assert job.rc == 0 and job.stats["failures"] == {} and job.stats["changed"]["ops-runner-1"] > 0
    stats = job.artifact_data()
    assert stats["ceptra_run"] == dict(stats["ceptra_run"], run_id=run_id, outcome="completed")
    assert_secrets_kept_out([job], inputs, audit_log)
    return job, stats


def assert_verified(nodes, audit_log, report_dir, run_id, operator):
    """The verify job passed its checklist on the scenario's run and the audit chain holds every job."""
    (verify,) = nodes[-1].jobs
    assert verify.status == "successful" and verify.stats["failures"] == {}, verify.stdout[-3000:]
    with open(str(report_dir / ("verify-%s.json" % run_id)), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["summary"]["ok"] is True and report["checklist"] and all(i["ok"] for i in report["checklist"])
    chain = verify_chain(str(audit_log))
    assert chain["ok"], chain["problems"]
    assert {run["operator"] for run in chain["runs"].values()} == {operator}
    assert len(chain["runs"]) == sum(len(node.jobs) for node in nodes)


def test_full_recovery_workflow_recovers_two_wiped_partitions_then_verifies(certs, tmp_path):
    labs = RecoveryLabs(tmp_path, held=300, tail=300, tls_dir=str(certs))
    try:
        assert labs.lab.url.startswith("https://")
        defs = awx_jobs.definitions()
        workflow = awx_jobs.find(defs, "controller_workflows", FULL_WORKFLOW)
        inputs = awx_jobs.credential_inputs(labs.lab, certs)
        source = labs.vars()["full_recovery_source"]
        databases = {"full_recovery_source": source, "full_recovery_cursor_store": labs.vars()["full_recovery_cursor_store"],
                     # verify reads the same history, in the order the scenario replayed it
                     "history_replay_source": dict(source, order_by="raft_index"),
                     "history_replay_cursor_store": labs.vars()["full_recovery_cursor_store"]}
        audit_log, reports = tmp_path / "audit.jsonl", tmp_path / "reports"
        live = LiveClient(labs.lab, labs.reference, rate=10.0).start()
        try:
            nodes = awx_jobs.run_workflow(str(tmp_path / "jobs"), workflow, defs, inputs, 7000, "heidi",
                                          answers={"ceptra_incident_id": "INC-7000"}, extra_vars=databases,
                                          extra_env={"CEPTRA_AUDIT_LOG": str(audit_log),
                                                     "CEPTRA_REPORT_DIR": str(reports)})
        finally:
            live.stop()
        recover, stats = assert_scenario_succeeded(nodes, ["recover", "verify"], "full-INC-7000", inputs, audit_log)
        plan = stats["full_recovery_plan"]
        assert plan["part_ids"] == ["1", "3"] and plan["order_by"] == "raft_index"   # the survey's "auto"
        assert {p: plan["partitions"][p]["events"] for p in ("1", "3")} == {"1": 300, "3": 300}
        rounds = [e for e in recover.events if e["event"] == "runner_on_ok"
                  and "Replay one round of history" in e["event_data"].get("task", "")]
        assert rounds and all(set(e["event_data"]["res"]["partitions"]) <= {"1", "3"} for e in rounds)
        # the audit file holds one record per task result of the job, in the order AWX stored them
        # (the callback names a role's task "<role> : <task>", as Ansible prints it)
        results = [(e["event_data"]["host"], e["event_data"]["task"]) for e in recover.events
                   if e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")]
        records = [json.loads(line) for line in audit_log.read_text(encoding="utf-8").splitlines()]
        tasks = [r for r in records if r["run"] == "awx-job-7010" and r["event"] == "task"]
        assert len(tasks) == len(results) > 20
        assert all(r["host"] == host and r["task"].endswith(task) for r, (host, task) in zip(tasks, results))
        # the wiped partitions hold their history again and the live events, as the reference does
        labs.assert_matches_reference({p: live.live_count(p) for p in live.parts})
        assert lab_json(labs.lab, "/v1/config")["config"]["partitions"] == {"1": {"ingress_gate": "open"},
                                                                            "3": {"ingress_gate": "open"}}
        assert_verified(nodes, audit_log, reports, "full-INC-7000", "heidi")

        # The verify template alone (the run named in its survey) on three tampered copies of the audit
        # file: each fails naming the damage.
        lines = audit_log.read_bytes().splitlines(keepends=True)
        record = json.loads(lines[3])
        record["changed"] = not record["changed"]
        # cut: the tail from the record the scenario anchored on (what the verify job appends to the copy
        # then takes the anchored seq with another hash)
        anchored = stats["ceptra_run"]["audit_head"]["seq"]
        copies = {"edited": lines[:3] + [(json.dumps(record, sort_keys=True) + "\n").encode()] + lines[4:],
                  "deleted": lines[:5] + lines[6:], "cut": lines[:anchored - 1]}
        template = awx_jobs.find(defs, "controller_templates", "CEPtra verify")
        for job_id, (name, kept) in enumerate(sorted(copies.items()), start=7100):
            copy = tmp_path / ("%s.jsonl" % name)
            copy.write_bytes(b"".join(kept))
            job = awx_jobs.run_job(str(tmp_path / "jobs"), template, defs, inputs, job_id, "heidi",
                                   answers={"ceptra_incident_id": "INC-7000", "ceptra_run_id": "full-INC-7000"},
                                   extra_vars=databases,
                                   extra_env={"CEPTRA_AUDIT_LOG": str(copy), "CEPTRA_REPORT_DIR": str(reports)})
            assert job.status == "failed", (name, job.stdout[-3000:])
            (chain_check,) = job.task_events("Verify the audit chain against its latest anchor")
            problems = " ".join(chain_check["event_data"]["res"]["problems"])
            assert TAMPERED[name] in problems, (name, problems)
            (failed,) = [e["event_data"] for e in job.events if e["event"] == "runner_on_failed"]
            assert failed["task"] == "Gate: the completion checklist holds"
            assert "Audit log holds the run's override, replay and completion records" in failed["res"]["msg"]
            with open(str(reports / "verify-full-INC-7000.json"), encoding="utf-8") as handle:
                checklist = json.load(handle)["checklist"]
            assert [item["id"] for item in checklist if not item["ok"]] == ["audit_records"]   # the rest holds
    finally:
        labs.close()


def test_policy_workflow_deploys_then_verifies(certs, tmp_path):
    # The workflow from its deploy node on: the plan node is this template in check mode, which
    # test_scenario_policy.py runs (and the approval mechanics the replay workflow's test shows);
    # left out here for the suite's time.
    lab, reference = policy_lab(tls_dir=str(certs)), reference_lab()
    live = None
    try:
        assert lab.url.startswith("https://")
        archive = str(tmp_path / "archive.db")
        window_start, window_end = write_archive(archive, time.time_ns(), events=300)
        for part_id, events in archived_events(archive).items():
            append_stream(reference, part_id, events)
        defs = awx_jobs.definitions()
        workflow = awx_jobs.find(defs, "controller_workflows", POLICY_WORKFLOW)
        from_deploy = dict(workflow, simplified_workflow_nodes=[
            node for node in workflow["simplified_workflow_nodes"] if node["identifier"] not in ("plan", "approve")])
        inputs = awx_jobs.credential_inputs(lab, certs)
        baseline = config_of(lab)
        audit_log, reports = tmp_path / "audit.jsonl", tmp_path / "reports"
        live = Live(lab, reference).start()
        nodes = awx_jobs.run_workflow(
            str(tmp_path / "jobs"), from_deploy, defs, inputs, 8000, "ivan",
            answers={"ceptra_incident_id": "CHG-8000", "policy_preflight_bundle_src": V2,
                     "history_replay_window_start_ns": window_start, "history_replay_window_end_ns": window_end},
            extra_vars={"history_replay_source": {"type": "sqlite", "path": archive},
                        "history_replay_cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.db")}},
            extra_env={"CEPTRA_AUDIT_LOG": str(audit_log), "CEPTRA_REPORT_DIR": str(reports)})
        live.stop()
        deploy, stats = assert_scenario_succeeded(nodes, ["deploy", "verify"], "policy-CHG-8000", inputs, audit_log)
        assert stats["ceptra_plan"]["upgrade_false_metrics"] == ["flags_peak"] and stats["ceptra_plan"]["needs_wal_replay"]
        replayed = [e for e in deploy.events if e["event"] == "runner_on_ok"
                    and e["event_data"].get("task") == "Replay the window in slices until every partition is done"]
        assert replayed and replayed[-1]["event_data"]["res"]["done"] is True
        # V+1 is active everywhere and its metrics equal the reference's, which saw every event on V+1
        assert {p["def_version"] for p in lab_get(lab, "/v1/state")["partitions"]} == {2}
        assert live.refused == 0 and live.sent > 0
        assert v2_metrics(lab) == v2_metrics(reference)
        assert config_of(lab)["config"]["metrics"] == baseline["config"]["metrics"]   # the override reverted
        assert_verified(nodes, audit_log, reports, "policy-CHG-8000", "ivan")
    finally:
        if live is not None:
            live.stop()
        lab.__exit__(None, None, None)
        reference.__exit__(None, None, None)
