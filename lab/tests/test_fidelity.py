"""What the scenarios will be proven against (issue 9): each test is one acceptance point."""
from __future__ import annotations

import json
import os
import time

from ceptra_lab.testing import LabProcess, append_stream, sample_event, wait_for

S = 1_000_000_000
SHARED = os.environ.get("CEPTRA_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
GAMING = os.path.join(SHARED, "reference", "bundles", "gaming_cheat_detection.yaml")
V1 = """bundle: {name: fidelity, def_version: 1, lane_domains: {player_id: {max_per_partition: 8}}}
workflow:
  phases:
    - {name: src, type: source.kafka, options: {connector: k}}
    - name: agg
      type: aggregate.promql
      options:
        window: 1h
        queries:
          flags: {expression: 'sum by (player_id)(increase(flags_total[1h]))'}
"""
V2 = V1.replace("def_version: 1", "def_version: 2") + \
    "          flags_max: {upgrade: false, expression: 'max by (player_id)(max_over_time(flags_total[1h]))'}\n"


def upload(lab, text):
    status, _, body = lab.request("POST", "/v1/definitions", data=text.encode(), role="operator",
                                  headers={"Content-Type": "application/yaml"})
    assert status == 200, body
    return body


def activate(lab, bundle_id, **extra):
    def committed():
        status, _, barrier = lab.request("POST", "/v1/activate", {"bundle_id": bundle_id, **extra}, role="operator")
        assert status == 200, barrier
        return barrier if barrier["state"] == "committed" else None
    return wait_for(committed, message="activation of %s" % bundle_id)


def snapshot(lab, part_id="0"):
    return lab.request("GET", f"/v1/test/metrics-snapshot?part_id={part_id}", role="observer")[2]


def manifest(lab, part_id="0"):
    return lab.request("GET", "/v1/state", role="observer")[2]["partitions"][int(part_id)]


def flag_events(prefix, count, start_ns, part_id="0"):
    return [sample_event(f"{prefix}-{i}", start_ns + i * 10_000_000, part_id=part_id, metric="flags_total",
                         labels={"player_id": f"p{i % 3}"}, value=float(i % 5), partition_key=f"p{i % 3}")
            for i in range(count)]


def reference_with(lab, text):
    """A lab with ``text`` active before any event (its upgrade:false shadow replays an empty WAL)."""
    bundle = upload(lab, text)
    replay_job(lab)
    activate(lab, bundle["bundle_id"])


def replay_job(lab, part_ids=("0",)):
    status, _, job = lab.request("POST", "/v1/replay", {"part_ids": list(part_ids), "reason": "test"}, role="operator")
    assert status == 200, job
    return wait_for(lambda: (lambda doc: doc if doc["state"] != "running" else None)(
        lab.request("GET", f"/v1/replay/{job['job_id']}", role="observer")[2]), message="replay job")


# ---- 1. scenario 3: the WAL replay builds the V+1 (shadow) state ---------------------------------
def test_v_plus_one_after_wal_replay_equals_a_partition_that_had_it_from_the_start(lab_factory):
    now = time.time_ns()
    early, late = flag_events("e", 30, now - 120 * S), flag_events("l", 20, now - 60 * S)
    lab = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    activate(lab, upload(lab, V1)["bundle_id"])
    append_stream(lab, "0", early)
    lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})          # the latest full checkpoint
    append_stream(lab, "0", late)
    v2 = upload(lab, V2)
    assert v2["needs_replay"] is True
    assert replay_job(lab)["state"] == "completed"
    activate(lab, v2["bundle_id"])
    # references: V+1 active from the start; one saw every event, one only those after the checkpoint
    everything = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    reference_with(everything, V2)
    append_stream(everything, "0", early + late)
    since_checkpoint = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    reference_with(since_checkpoint, V2)
    append_stream(since_checkpoint, "0", late)
    got = snapshot(lab)["metrics"]
    assert got["flags_max"] == snapshot(since_checkpoint)["metrics"]["flags_max"]   # upgrade:false: replayed
    assert got["flags"] == snapshot(everything)["metrics"]["flags"]                 # upgraded in place
    assert manifest(lab)["def_version"] == 2


def test_without_a_checkpoint_the_replay_covers_the_whole_wal(lab_factory):
    events = flag_events("a", 40, time.time_ns() - 90 * S)
    lab = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    activate(lab, upload(lab, V1)["bundle_id"])
    append_stream(lab, "0", events)
    v2 = upload(lab, V2)
    replay_job(lab)
    activate(lab, v2["bundle_id"])
    reference = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    reference_with(reference, V2)
    append_stream(reference, "0", events)
    assert snapshot(lab)["metrics"] == snapshot(reference)["metrics"]


# ---- 2. deterministic re-apply ------------------------------------------------------------------
def test_restart_and_wal_replay_give_the_digest_that_was_there_after_an_override_was_reverted(tmp_path):
    state = str(tmp_path / "state")
    now = time.time_ns()
    with LabProcess(partitions=1, state_dir=state) as lab:
        append_stream(lab, "0", [sample_event("live-1", now, part_id="0", metric="m")])
        version = lab.request("GET", "/v1/config", role="observer")[2]["version"]
        raised = {"lateness_allowance_ms": 4 * 3600_000, "correction_horizon_ms": 4 * 3600_000}
        assert lab.request("PATCH", "/v1/config", raised, role="operator")[0] == 200
        old = [sample_event(f"old-{i}", now - 2 * 3600 * S + i * S, part_id="0", metric="m", value=float(i))
               for i in range(50)]
        append_stream(lab, "0", old[:25])
        lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})
        append_stream(lab, "0", old[25:])
        assert lab.request("POST", f"/v1/config/rollback?to={version}", role="operator")[0] == 200
        before = snapshot(lab)
        assert before["late"] == {} and before["metrics"]["m"]["raw"]
        assert replay_job(lab)["state"] == "completed"                        # (b) a WAL replay job
        assert snapshot(lab)["digest"] == before["digest"]
    with LabProcess(partitions=1, state_dir=state) as lab:                    # (a) a restart
        after = snapshot(lab)
        assert after["digest"] == before["digest"] and after["late"] == {}
        assert replay_job(lab)["state"] == "completed"
        assert snapshot(lab)["digest"] == before["digest"]


# ---- 3. rules, derived events, the test sink -----------------------------------------------------
def gaming_events(now, part_id="0", decision=None):
    """A player whose short-window headshot ratio jumps 0.64 above its 30-minute baseline with
    three anti-cheat flags, then two trigger events in a later pane."""
    ranked = {"queue": "ranked", "player_id": "player-7"}
    events = [sample_event(f"base-{i}", now - (600 - i) * S, part_id=part_id, metric="player_headshot_ratio",
                           labels=ranked, value=0.1, partition_key="player-7") for i in range(20)]
    events += [sample_event(f"hs-{i}", now - (10 - i) * S, part_id=part_id, metric="player_headshot_ratio",
                            labels=ranked, value=0.9, partition_key="player-7") for i in range(5)]
    events += [sample_event(f"flag-{i}", now - 4 * S, part_id=part_id, metric="anti_cheat_flags_total",
                            labels=ranked, value=1.0, partition_key="player-7") for i in range(3)]
    for i in range(2):
        trigger = sample_event(f"trigger-{i}", now - S, part_id=part_id, metric="anti_cheat_flags_total",
                               labels=ranked, value=1.0, partition_key="player-7")
        trigger["payload"]["session_id"] = "s-42"
        if decision:
            trigger["payload"]["external_decision_id"] = f"{decision}-{i}"
        events.append(trigger)
    return events


def derived(lab, part_id="0"):
    return lab.request("GET", f"/v1/test/derived-events?part_id={part_id}", role="observer")[2]


def test_rules_emit_the_same_derived_events_for_the_same_ordered_events(lab_factory):
    with open(GAMING, "rb") as handle:
        gaming = handle.read().decode()
    now = time.time_ns()
    labs = [lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"]) for _ in range(2)]
    for lab in labs:
        activate(lab, upload(lab, gaming)["bundle_id"])
        append_stream(lab, "0", gaming_events(now))
    first, second = derived(labs[0]), derived(labs[1])
    assert first["count"] == 2 and first["derived_events"] == second["derived_events"]
    event = first["derived_events"][0]
    assert event["rule_id"] == "evaluate_player_risk/potential_aimbot_user" and event["rule_version"] == 1
    assert event["channel"] == "kafkas://liveops.cheat_alerts" and event["flags"] == ["DERIVED"]
    assert event["payload"]["player_id"] == "player_id=player-7".split("=")[1]
    assert event["payload"]["session_id"] == "s-42" and event["payload"]["anti_cheat_flags"] == 3.0
    assert len(event["derived_event_id"]) == 16
    assert first["sink"]["delivered"] == 2
    # a WAL replay job re-evaluates the rules: the same ids again, which the sink drops
    replay_job(labs[0])
    again = derived(labs[0])
    assert again["derived_events"] == first["derived_events"]
    assert again["sink"]["delivered"] == 2 and again["sink"]["duplicate_derived_event_id"] == 2


def test_replaying_events_that_carry_external_decisions_delivers_no_duplicate(lab_factory):
    with open(GAMING, "rb") as handle:
        gaming = handle.read().decode()
    lab = lab_factory(partitions=1, extra_args=["--shadow-warmup-ms", "50"])
    activate(lab, upload(lab, gaming)["bundle_id"])
    # during the outage the secondary system decided (and delivered) d-0 and d-1 itself
    status, _, sink = lab.request("POST", "/v1/test/sink", {"external_decision_ids": ["d-0", "d-1"]})
    assert status == 200 and sink["external_decisions_registered"] == 2
    history = gaming_events(time.time_ns(), decision="d")
    for event in history:
        event["flags"] = ["REPLAY"]
    append_stream(lab, "0", history)
    result = derived(lab)
    assert [e["external_decision_id"] for e in result["derived_events"]] == ["d-0", "d-1"]
    assert result["sink"]["delivered"] == 0 and result["sink"]["duplicate_external_decision_id"] == 2


def test_a_rule_the_lab_cannot_evaluate_is_accepted_with_a_warning_naming_it(lab):
    text = V1 + """    - name: judge
      type: classify.cel
      options:
        bindings: {m: phase.agg.metrics}
        rules:
          - {name: uses_select, when: 'select("flags", {"player_id": "p1"}).value > 1', emit: {channel: 'kafkas://out'}}
          - {name: fine, when: 'm["flags"].value > 1.0', emit: {channel: 'kafkas://out'}}
"""
    body = upload(lab, text.replace("name: fidelity", "name: fidelity_rules"))
    warning = [w for w in body["warnings"] if "uses_select" in w]
    assert warning and "'select'" in warning[0] and not [w for w in body["warnings"] if "'fine'" in w]


# ---- 4. full-recovery start --------------------------------------------------------------------
def test_wipe_keeps_the_checkpoint_baseline_and_forces_warmup_over_a_stale_open_gate(lab_factory):
    lab = lab_factory(partitions=2)
    stale = {"partitions": {"0": {"ingress_gate": "open"}}}
    assert lab.request("PATCH", "/v1/config", stale, role="operator")[0] == 200
    now = time.time_ns()
    append_stream(lab, "0", [sample_event(f"a-{i}", now - (100 - i) * S, part_id="0", metric="m") for i in range(30)])
    lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})
    append_stream(lab, "0", [sample_event(f"b-{i}", now - S, part_id="0", metric="m") for i in range(10)])
    version = lab.request("GET", "/v1/config", role="observer")[2]["version"]
    status, _, wiped = lab.request("POST", "/v1/test/wipe", {"part_id": "0"})
    assert status == 200
    part = manifest(lab)
    assert part["applied_index"] == part["commit_index"] == part["checkpoint"]["full_index"] == 30
    assert part["checkpoint"]["event_ts_high_ns"] == now - 71 * S == wiped["baseline"]["event_ts_high_ns"]
    assert part["ingress_gate"] == "warmup" and part["warmup"] is True
    config = lab.request("GET", "/v1/config", role="observer")[2]
    assert config["version"] == version + 1 and config["config"]["partitions"]["0"]["ingress_gate"] == "warmup"
    kinds = [r["kind"] for r in lab.request("GET", "/v1/audit", role="observer")[2]["records"]]
    assert kinds[-2:] == ["wipe", "config_change"]
    live = append_stream(lab, "0", [sample_event("live-x", time.time_ns(), part_id="0", metric="m")])[0]
    assert (live["status"], live["cep_status_reason"]) == ("TransientBackpressure", "TRANSIENT_WARMUP")
    historic = append_stream(lab, "0", [sample_event("b-0", now - S, part_id="0", metric="m", flags=["REPLAY"])])[0]
    assert historic["status"] == "Healthy" and historic["index"] == 31
    # the operator opens the gate; a second wipe still starts in warmup
    assert lab.request("PATCH", "/v1/config", stale, role="operator")[0] == 200
    lab.request("POST", "/v1/test/wipe", {"part_id": "0"})
    assert manifest(lab)["ingress_gate"] == "warmup"
    lab.request("POST", "/v1/test/wipe", {"part_id": "0", "drop_checkpoint": True})
    part = manifest(lab)
    assert part["applied_index"] == part["checkpoint"]["full_index"] == 0


def test_a_full_recovery_from_the_baseline_rebuilds_exactly_the_lost_state(lab_factory):
    """Scenario 1 on the lab: after a wipe, replaying from the baseline's high-water mark (the
    baseline's own events again, then the lost tail) applies only the lost tail (the baseline
    keeps its dedup entries), live events wait behind the gate, and the snapshot comes back
    to what it was before the wipe plus the live events."""
    lab = lab_factory(partitions=1)
    now = time.time_ns()
    held = [sample_event(f"h-{i}", now - (60 - i) * S, part_id="0", metric="m", value=float(i)) for i in range(20)]
    tail = [sample_event(f"t-{i}", now - (30 - i) * S, part_id="0", metric="m", value=0.5) for i in range(10)]
    append_stream(lab, "0", held)
    lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})
    append_stream(lab, "0", tail)
    before = snapshot(lab)
    lab.request("POST", "/v1/test/wipe", {"part_id": "0"})
    assert snapshot(lab)["digest"] != before["digest"]
    live = sample_event("live-1", time.time_ns(), part_id="0", metric="m", value=2.0)
    assert append_stream(lab, "0", [live])[0]["cep_status_reason"] == "TRANSIENT_WARMUP"
    high = manifest(lab)["checkpoint"]["event_ts_high_ns"]
    replay = [dict(e, flags=["REPLAY"], replay_session="full/0", replay_seq=n)
              for n, e in enumerate([e for e in held + tail if e["ts_ns"] >= high - 2 * S], 1)]
    answers = append_stream(lab, "0", replay)
    assert [a.get("duplicate", False) for a in answers] == [True] * (len(replay) - 10) + [False] * 10
    assert snapshot(lab)["digest"] == before["digest"] and manifest(lab)["applied_index"] == 30
    lab.request("PATCH", "/v1/config", {"partitions": {"0": {"ingress_gate": "open"}}}, role="operator")
    assert append_stream(lab, "0", [live])[0]["index"] == 31


# ---- 6. event_id dedup for every event, PERMANENT_RETRY_EXPIRED -------------------------------------
def test_a_replay_copy_of_a_live_event_is_a_duplicate_and_a_late_retry_is_refused(lab_factory):
    lab = lab_factory(partitions=1)
    now = time.time_ns()
    live = sample_event("ev-1", now - S, part_id="0", metric="m", value=5.0)
    assert append_stream(lab, "0", [live])[0]["index"] == 1
    copy = dict(live, flags=["REPLAY"], replay_session="hist/0", replay_seq=1)
    answer = append_stream(lab, "0", [copy])[0]
    assert answer["duplicate"] is True and answer["index"] == 1
    assert manifest(lab)["applied_index"] == 1 and snapshot(lab)["metrics"]["m"]["raw"][""]
    assert lab.request("PATCH", "/v1/config", {"client_retry_window_s": 1}, role="operator")[0] == 200
    time.sleep(1.3)
    late = append_stream(lab, "0", [dict(copy, replay_seq=2)])[0]
    assert (late["status"], late["cep_status_reason"]) == ("PermanentDurability", "PERMANENT_RETRY_EXPIRED")
    assert manifest(lab)["commit_index"] == 1
    records = wait_for(lambda: lab.request("GET", "/v1/audit?kind=retry_expired", role="observer")[2]["records"])
    assert records[0]["details"]["event_id"] == "ev-1" and records[0]["details"]["part_id"] == "0"


# ---- 7. activation exclusion -----------------------------------------------------------------------
def test_excluded_partitions_stay_on_the_old_version_and_not_ready_until_re_included(lab_factory):
    lab = lab_factory(partitions=2, extra_args=["--shadow-warmup-ms", "50"])
    activate(lab, upload(lab, V1)["bundle_id"])
    v2 = upload(lab, V2.replace("upgrade: false, ", ""))
    lab.request("POST", "/v1/test/faults", {"part_id": "1", "shadow_state": "SHADOW_FAILED"})
    barrier = activate(lab, v2["bundle_id"], exclude_partitions=["1"])
    assert list(barrier["barrier_index"]) == ["0"]
    assert (manifest(lab, "0")["def_version"], manifest(lab, "1")["def_version"]) == (2, 1)
    lab.request("POST", "/v1/test/faults", {"part_id": "1", "shadow_state": None})
    time.sleep(0.3)                                    # its shadow is Ready again, but it stays excluded
    readiness = lab.request("GET", "/readyz", role="observer")[2]["partitions"]["1"]
    assert readiness["ready"] is False and "definition_warmup_pending" in readiness["reasons"]
    assert readiness["excluded_from_activation"] == barrier["barrier_id"] and manifest(lab, "1")["def_version"] == 1
    again = activate(lab, v2["bundle_id"])             # re-include: a barrier for the partitions left behind
    assert again["barrier_id"] != barrier["barrier_id"] and list(again["barrier_index"]) == ["1"]
    assert manifest(lab, "1")["def_version"] == 2
    assert wait_for(lambda: lab.request("GET", "/readyz", role="observer")[2]["partitions"]["1"]["ready"])


# ---- 8. replication model ----------------------------------------------------------------------------
def test_replication_lag_rises_above_the_gate_when_appends_outpace_capacity_and_falls_after(lab_factory):
    lab = lab_factory(partitions=1, extra_args=["--replication-capacity", "400"])
    now = time.time_ns()
    for burst in range(4):
        append_stream(lab, "0", [sample_event(f"r{burst}-{i}", now, part_id="0", metric="m") for i in range(400)])
    # 1600 entries at 400/s: the oldest the follower lacks keeps ageing for ~4 s
    lag = wait_for(lambda: (lambda doc: doc if doc["metrics"]["replication_lag_ms"] > 250 else None)(
        lab.request("GET", "/readyz", role="observer")[2]["partitions"]["0"]), timeout=10)
    assert "replication_lag" in lag["reasons"]
    assert "replication_lag_ms{part_id=\"0\"}" in lab.request("GET", "/metrics", role="observer")[2]
    assert wait_for(lambda: lab.request("GET", "/readyz", role="observer")[2]["partitions"]["0"]["metrics"]
                    ["replication_lag_ms"] == 0, timeout=30)


def test_derived_events_rpc_and_sink_answer_clear_errors(lab):
    assert lab.request("GET", "/v1/test/derived-events", role="observer")[0] == 400
    assert lab.request("GET", "/v1/test/derived-events?part_id=9", role="observer")[0] == 404
    status, _, body = lab.request("GET", "/v1/test/derived-events?part_id=0&since=0", role="observer")
    assert status == 200 and body["derived_events"] == [] and set(body["sink"]) >= {"delivered", "received"}
    assert lab.request("POST", "/v1/test/sink", {"external_decision_ids": [1]})[0] == 422
    assert lab.request("POST", "/v1/test/sink", {"reset": True}, role="observer")[0] == 403
    json.dumps(body)


def test_a_restart_after_replay_and_activation_recomputes_the_v_plus_one_state(tmp_path):
    state = str(tmp_path / "state")
    now = time.time_ns()
    with LabProcess(partitions=1, state_dir=state, extra_args=["--shadow-warmup-ms", "50"]) as lab:
        activate(lab, upload(lab, V1)["bundle_id"])
        append_stream(lab, "0", flag_events("e", 30, now - 120 * S))
        lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})
        append_stream(lab, "0", flag_events("l", 20, now - 60 * S))
        v2 = upload(lab, V2)
        replay_job(lab)
        activate(lab, v2["bundle_id"])
        append_stream(lab, "0", flag_events("n", 10, now - 30 * S))
        before = snapshot(lab)
        assert before["metrics"]["flags_max"]["raw"]
    with LabProcess(partitions=1, state_dir=state, extra_args=["--shadow-warmup-ms", "50"]) as lab:
        assert snapshot(lab)["digest"] == before["digest"]
        assert manifest(lab)["def_version"] == 2


def test_a_restart_after_a_wipe_comes_back_from_the_baseline_not_the_lost_tail(tmp_path):
    state = str(tmp_path / "state")
    now = time.time_ns()
    with LabProcess(partitions=1, state_dir=state) as lab:
        append_stream(lab, "0", [sample_event(f"a-{i}", now - (50 - i) * S, part_id="0", metric="m") for i in range(20)])
        lab.request("POST", "/v1/test/checkpoint", {"part_id": "0"})
        append_stream(lab, "0", [sample_event(f"lost-{i}", now - S, part_id="0", metric="m") for i in range(5)])
        lab.request("POST", "/v1/test/wipe", {"part_id": "0"})
        append_stream(lab, "0", [sample_event(f"h-{i}", now - 20 * S, part_id="0", metric="m", flags=["REPLAY"])
                                 for i in range(7)])
        before, part = snapshot(lab), manifest(lab)
        assert (part["commit_index"], part["checkpoint"]["full_index"]) == (27, 20)
    with LabProcess(partitions=1, state_dir=state) as lab:
        assert snapshot(lab)["digest"] == before["digest"]
        again = manifest(lab)
        assert (again["commit_index"], again["ingress_gate"]) == (27, "warmup")
