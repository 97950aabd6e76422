"""scenario_full end to end, as AWX runs it (ansible-runner; issue 13's acceptance; docs/scenario-full.md).

A lab received 3,000 events per partition (a full checkpoint after the first 1,500); two of
its four partitions then lost their WAL. The history archived every event with the Raft
index the cluster gave it. A reference lab received the same events and the live ones, with
no wipe: after the scenario every partition's snapshot must equal the reference's.
"""

import pytest

from .full_recovery_lab import LiveClient, RecoveryLabs, lab_json
from .runbook_support.faults import set_fault
from .runbook_support.runner import RunnerJob

PLAN_TASK = "Plan the full recovery (partitions, start positions, events, dedup capacity, overrides)"


def scenario_vars(labs, incident, **more):
    extra = dict(labs.vars(), ceptra_incident_id=incident, full_recovery_round_s=1, full_recovery_live_rate_eps=20.0)
    for key in ("ceptra_url", "ceptra_token"):      # the connection comes from CEPTRA_* (the credential)
        extra.pop(key)
    extra.update(more)
    return extra


def verify_vars(labs, run_id, order_by):
    source = dict(labs.vars()["full_recovery_source"], order_by=order_by)
    return {"ceptra_incident_id": run_id, "ceptra_run_id": run_id, "history_replay_source": source,
            "history_replay_cursor_store": labs.vars()["full_recovery_cursor_store"]}


def replay_duplicates(job_result, part_id):
    """Events of ``part_id`` the cluster answered ``duplicate`` over every replay round of a job."""
    total = 0
    for event in job_result.events:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and "Replay one round of history" in data.get("task", ""):
            total += ((data.get("res") or {}).get("partitions") or {}).get(part_id, {}).get("duplicates", 0)
    return total


def config_version(labs):
    return lab_json(labs.lab, "/v1/config")["version"]


def audit_count(labs):
    return len(lab_json(labs.lab, "/v1/audit")["records"])


@pytest.fixture
def make_labs(tmp_path):
    made = []

    def make(**options):
        made.append(RecoveryLabs(tmp_path, **options))
        return made[-1]
    yield make
    for labs in made:
        labs.close()


def test_two_wiped_partitions_recover_with_live_traffic_and_match_the_reference(make_labs, tmp_path):
    labs = make_labs(held=1500, tail=4500)
    job = RunnerJob(labs.lab, tmp_path)
    version, records = config_version(labs), audit_count(labs)
    planned = job.run("scenario_full.yml", scenario_vars(labs, "INC-13"), check=True)
    assert planned.rc == 0, planned.stdout[-3000:]
    plan = planned.set_stats()["full_recovery_plan"]
    assert plan["part_ids"] == ["1", "3"] and plan["order_by"] == "raft_index"
    for part_id in ("1", "3"):
        part = plan["partitions"][part_id]
        assert part["start"] == {"mode": "raft_index", "baseline_index": 1500, "source_bound": {"after_raft_index": 1500},
                                 "event_ts_high_ns": part["start"]["event_ts_high_ns"]}
        assert part["events"] == 4500 and part["dedup"]["needed"] >= 4500 + 1500
    assert "partition 1: after raft index 1500; 4500 event(s) left" in planned.stdout
    assert (config_version(labs), audit_count(labs)) == (version, records)     # --check changed nothing

    live = LiveClient(labs.lab, labs.reference).start()
    try:
        result = job.run("scenario_full.yml", scenario_vars(labs, "INC-13"))
    finally:
        live.stop()
    assert result.rc == 0, result.stdout[-4000:]
    labs.assert_matches_reference({p: live.live_count(p) for p in live.parts})
    opened, done = labs.gate_opened_at(), labs.replay_done_at()
    for part_id in ("1", "3"):
        refused = [t for t, reason in live.refused[part_id] if reason == "TRANSIENT_WARMUP"]
        admitted = [t for t, _event in live.admitted[part_id] if t > max(refused)]
        # refused only while the gate was closed, admitted again once it opened and before the
        # partition's replay finished (0.2 s either way: the audit record is stamped just after
        # the gate flips, the client stamps its answers when they arrive)
        assert refused and max(refused) <= opened[part_id] + 0.2
        assert admitted[0] + 0.2 > opened[part_id], {"gate_opened": opened[part_id], "first_admitted": admitted[0]}
        assert admitted[0] < done[part_id], {"gate_opened": opened[part_id], "first_admitted": admitted[0],
                                             "replay_done": done[part_id]}
        print("partition %s: last refusal %.2f s, gate opened %.2f s, first live admitted %.2f s, replay done %.2f s "
              "after the first refusal" % (part_id, max(refused) - refused[0], opened[part_id] - refused[0],
                                           admitted[0] - refused[0], done[part_id] - refused[0]))
    assert not live.refused["0"] and not live.refused["2"]
    config = lab_json(labs.lab, "/v1/config")["config"]
    assert config["partitions"] == {"1": {"ingress_gate": "open"}, "3": {"ingress_gate": "open"}}   # overrides gone
    verified = job.run("verify.yml", verify_vars(labs, "full-INC-13", "raft_index"))
    assert verified.rc == 0, verified.stdout[-4000:]


def test_no_checkpoint_event_time_boundary_bounds_a_never_ready_gate_resume_and_rerun(make_labs, tmp_path):
    """Partition 1 lost its checkpoint too; partition 3 kept it and the history has no raft
    index (event-time start, event_id dedup at the boundary); partition 3 never gets ready."""
    labs = make_labs(wiped={"1": True, "3": False}, raft_index=False)
    job = RunnerJob(labs.lab, tmp_path)
    extra = scenario_vars(labs, "INC-13b", scenario_full_open_timeout_s=5, full_recovery_replication_lag_threshold_ms=1000)
    # a live rate whose dedup need is past the knob's bound: refused in the plan, before any PATCH
    version = config_version(labs)
    refused = job.run("scenario_full.yml", dict(extra, full_recovery_live_rate_eps=1e6))
    assert refused.rc != 0 and "refused before any config change: dedup_capacity_per_partition" in \
        refused.results["Fail naming the gate"]["msg"]
    assert config_version(labs) == version

    set_fault(labs.lab, part_id="3", replication_lag_ms=400)      # above the readiness gate (250), below the throttle's
    failed = job.run("scenario_full.yml", extra)
    assert failed.rc != 0
    plan = failed.set_stats()["full_recovery_plan"]
    assert plan["order_by"] == "event_time"
    assert plan["partitions"]["1"]["start"]["mode"] == "start_of_history" and plan["partitions"]["1"]["events"] == 3000
    boundary = plan["partitions"]["3"]["start"]
    assert boundary["mode"] == "event_time" and boundary["boundary_dedup"] == "event_id"
    message = failed.results["Fail naming the gate"]["msg"]
    assert "Gate: ingress open" in message and "partition(s) 3 still in warmup" in message and "replication_lag" in message
    config = lab_json(labs.lab, "/v1/config")["config"]
    # overrides restored; the ready partition was opened, the other stays in warmup (docs/scenario-full.md)
    assert config["partitions"] == {"1": {"ingress_gate": "open"}, "3": {"ingress_gate": "warmup"}}
    assert config["annotations"].get("ceptra.backfill/overrides", {}) == {}

    set_fault(labs.lab, part_id="3", replication_lag_ms=0)
    resumed = job.run("scenario_full.yml", extra)
    assert resumed.rc == 0, resumed.stdout[-4000:]
    assert resumed.set_stats()["full_recovery_plan"]["resumed"]
    # the events of the overlap below the high-water mark were sent again and dropped by the cluster
    overlap = plan["partitions"]["3"]["events"] - 1500
    assert overlap > 0 and replay_duplicates(failed, "3") + replay_duplicates(resumed, "3") == overlap
    assert replay_duplicates(failed, "1") + replay_duplicates(resumed, "1") == 0
    labs.assert_matches_reference({})
    again = job.run("scenario_full.yml", extra)
    assert again.rc == 0 and again.changed == 0, [n for n, r in again.results.items() if r.get("changed")]
