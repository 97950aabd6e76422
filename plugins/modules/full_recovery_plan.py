#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan the full recovery of partitions whose Raft log is empty."""

from __future__ import annotations

DOCUMENTATION = r"""
module: full_recovery_plan
short_description: Plan the full recovery of CEPtra partitions whose Raft log is empty
version_added: 0.1.0
description:
  - Finds the partitions to recover (in warmup with C(applied_index == checkpoint.full_index),
    or O(partitions)), and for each one where its replay of the historic source starts -
    after the baseline checkpoint's index when the history carries the Raft index surrogate
    (C(order_by=raft_index)), else from the checkpoint's event-time high-water mark minus
    O(boundary_overlap_ms), the events of the overlap being dropped by the cluster's
    C(event_id) dedup; from the start of history when the partition has no checkpoint.
  - Computes the overrides the replay needs - C(lateness_allowance_ms) and
    C(correction_horizon_ms) wide enough to keep the oldest replayed event mutable until the
    overrides expire, and C(dedup_capacity_per_partition) raised when the table cannot hold
    what it holds now plus the planned replay plus the live traffic of a retry window - and
    fails, before any config change, when a knob would break its bounds.
  - Sends nothing and changes nothing (also outside check mode). The first real run of a
    scenario records RV(record) in the audit log (kind C(full_recovery_plan)); later runs with
    the same O(run_id) find it and resume that plan (the same partitions, starts and horizon),
    with the events left after the run's cursors.
options:
  run_id:
    description: The recovery's run id (replay sessions, cursors, the plan record).
    type: str
    required: true
  source:
    description: The historic source, as for M(ceptra.backfill.historic_replay).
    type: dict
    required: true
  cursor_store:
    description: The cursor store, as for M(ceptra.backfill.historic_replay).
    type: dict
    required: true
  partitions:
    description: The partitions to recover. Default - every partition in warmup at its baseline checkpoint.
    type: list
    elements: str
  order_by:
    description:
      - How the history is read. V(auto) takes V(raft_index) when every row to replay has the
        Raft index surrogate, else V(event_time).
    type: str
    choices: [auto, raft_index, event_time]
    default: auto
  horizon_ns:
    description:
      - Event time (ns) the replay stops at (exclusive). Default - the time of the first plan
        (the live head when the recovery started; live traffic covers what comes after).
    type: int
  boundary_overlap_ms:
    description:
      - In event-time order, how far before the checkpoint's high-water mark the replay starts.
        Default - the cluster's C(lateness_allowance_ms).
    type: int
  live_rate_eps:
    description: Live events per second expected per partition during the recovery (dedup sizing).
    type: float
    default: 0.0
  estimated_rate:
    description: Replay events per second per partition, for the duration estimate.
    type: float
    default: 2000.0
  override_window_s:
    description: Seconds the overrides stay valid; L and C also cover that much more event-time age.
    type: int
    default: 7200
  dedup_headroom:
    description: Factor applied to the dedup entries needed.
    type: float
    default: 1.25
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
"""

EXAMPLES = r"""
- name: Plan the full recovery of the wiped partitions
  ceptra.backfill.full_recovery_plan:
    run_id: INC-4711-full
    source: {type: postgresql, dsn: "host=archive dbname=history user=replay"}
    cursor_store: {type: postgresql, dsn: "host=archive dbname=ops user=replay"}
    live_rate_eps: 800
  register: recovery

- name: Show the plan
  ansible.builtin.debug:
    var: recovery.lines
"""

RETURN = r"""
plan:
  description:
    - The plan. C(partitions) maps each partition to its C(start) (C(mode) V(raft_index),
      V(event_time) or V(start_of_history), C(baseline_index), C(event_ts_high_ns),
      C(source_bound)), C(events) left, C(events_done) and C(dedup) C({occupancy, capacity, needed});
      C(overrides) are the settings to stage (empty when nothing needs widening).
  returned: success
  type: dict
  sample:
    run_id: INC-4711-full
    part_ids: ["1", "3"]
    order_by: raft_index
    horizon_ns: 1732600000000000000
    events: 20000
    resumed: false
    dedup_capacity: {current: 1000000, needed: 14000, raise_to: null}
    overrides: {partitions: {"1": {lateness_allowance_ms: 9000000, correction_horizon_ms: 9000000}}}
replay_source:
  description: The source spec to replay with (order, partitions, C(partition_start), horizon as C(window.end_ns)).
  returned: success
  type: dict
record:
  description: The plan record to write to the audit log (kind C(full_recovery_plan), C(record_id) set).
  returned: success
  type: dict
lines:
  description: The plan as readable lines.
  returned: success
  type: list
  elements: str
"""

from ansible_collections.ceptra.backfill.plugins.module_utils import _full_recovery
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule

ARGUMENT_SPEC = {
    "run_id": {"type": "str", "required": True},
    "source": {"type": "dict", "required": True, "no_log": False},
    "cursor_store": {"type": "dict", "required": True, "no_log": False},
    "partitions": {"type": "list", "elements": "str"},
    "order_by": {"type": "str", "choices": ["auto", "raft_index", "event_time"], "default": "auto"},
    "horizon_ns": {"type": "int"},
    "boundary_overlap_ms": {"type": "int"},
    "live_rate_eps": {"type": "float", "default": 0.0},
    "estimated_rate": {"type": "float", "default": 2000.0},
    "override_window_s": {"type": "int", "default": 7200},
    "dedup_headroom": {"type": "float", "default": 1.25},
}


def main():
    """Run the module."""
    module = CeptraModule(argument_spec=ARGUMENT_SPEC)
    with module.reporting("plan the full recovery %s" % module.params["run_id"]):
        result = _full_recovery.plan_recovery(dict(module.params, client=module.client))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
