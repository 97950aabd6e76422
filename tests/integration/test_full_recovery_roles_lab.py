"""The full_recovery and ingress_gate roles against a lab with two wiped partitions and live
traffic: the plan, the early gate opening while the replay goes on, and the state afterwards
equal to a reference lab's (the scenario itself: test_scenario_full.py)."""

import pytest

from .full_recovery_lab import LiveClient, RecoveryLabs

PLAY = """
- name: Full recovery with the roles only
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/ceptra.backfill.cp:
      url: "{{ ceptra_url }}"
      token: "{{ ceptra_token }}"
  vars:
    ceptra_run_id: roles-full
    ceptra_incident_id: INC-roles
  tasks:
    - name: Plan
      ansible.builtin.include_role:
        name: ceptra.backfill.full_recovery
        tasks_from: discover
    - name: Stage the overrides of the plan
      ceptra.backfill.config_override:
        name: roles-full
        settings: "{{ full_recovery_plan.overrides }}"
        valid_for: 2h
      when: full_recovery_plan.overrides | length > 0
    - name: Hold the partitions in warmup
      ansible.builtin.include_role:
        name: ceptra.backfill.ingress_gate
        tasks_from: close
      vars:
        ingress_gate_partitions: "{{ full_recovery_plan.part_ids }}"
      when: not full_recovery_plan.resumed
    - name: Replay, opening each gate early
      ansible.builtin.include_role:
        name: ceptra.backfill.full_recovery
        tasks_from: replay
      vars:
        full_recovery_round_s: 1
    - name: Open every gate
      ansible.builtin.include_role:
        name: ceptra.backfill.ingress_gate
        tasks_from: wait_open
      vars:
        ingress_gate_partitions: "{{ full_recovery_plan.part_ids }}"
        ingress_gate_timeout_s: 60
    - name: Restore the defaults
      ceptra.backfill.config_override:
        name: roles-full
        state: absent
"""


def task_result(result, name):
    """The result of the task ``name`` (role tasks are named ``<role> : <name>``)."""
    return next(value for key, value in result.results.items() if key.split(" : ")[-1] == name)


@pytest.fixture
def labs(tmp_path):
    labs = RecoveryLabs(tmp_path, held=1500, tail=4500)
    yield labs
    labs.close()


def test_roles_recover_two_wiped_partitions_with_live_traffic(labs, run_playbook):
    live = LiveClient(labs.lab, labs.reference).start()
    try:
        result = run_playbook(PLAY, extravars=labs.vars())
    finally:
        live.stop()
    assert result.rc == 0, result.stdout[-3000:]
    plan = task_result(result, "Plan the full recovery (partitions, start positions, events, dedup capacity, overrides)")["plan"]
    assert plan["part_ids"] == ["1", "3"] and plan["order_by"] == "raft_index"
    assert {p: s["start"]["source_bound"] for p, s in plan["partitions"].items()} == {
        "1": {"after_raft_index": 1500}, "3": {"after_raft_index": 1500}}
    assert {p: s["events"] for p, s in plan["partitions"].items()} == {"1": 4500, "3": 4500}
    lab_digests, ref_digests, lab_counts, ref_counts = labs.compare()
    assert lab_digests == ref_digests
    for part_id in ("0", "1", "2", "3"):
        assert lab_counts[part_id] == ref_counts[part_id] == labs.per_part + live.live_count(part_id)
    opened, done = labs.gate_opened_at(), labs.replay_done_at()
    for part_id in ("1", "3"):
        refused = [t for t, reason in live.refused[part_id] if reason == "TRANSIENT_WARMUP"]
        admitted_after = [t for t, _e in live.admitted[part_id] if t > max(refused)]
        assert refused and max(refused) <= opened[part_id] + 0.2
        assert admitted_after[0] < done[part_id], (admitted_after[0], done[part_id])
    assert not live.refused["0"] and not live.refused["2"]
