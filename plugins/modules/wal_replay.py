#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a partition WAL replay job from the latest full checkpoint."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wal_replay
short_description: Replay CEPtra partitions' WAL from the latest full checkpoint
version_added: 0.1.0
description:
  - Starts a WAL replay job (C(POST /v1/replay) with C(from=latest_full_checkpoint)) that
    rebuilds partition state from the partition's own WAL, waits for it and reports, per
    partition, the index it replayed from, the index it had to reach and the index it reached.
  - This is how shadows of a bundle with C(upgrade) set to C(false) aggregators finish warming up.
    It is not the historic backfill (see M(ceptra.backfill.historic_replay)).
  - With O(needs_replay_only=true) the job covers exactly the partitions whose shadow needs a
    WAL replay (optionally limited to O(part_ids)); when there is none the module changes nothing.
  - A job that is still running and already covers the selected partitions (started by an earlier,
    interrupted run; found through the CP audit log's C(replay_job) records) is waited for instead
    of starting a second one (RV(resumed)).
  - With O(job_id) the module only reads that job once (progress per partition, RV(done)); use
    it in an C(until) loop to show progress on each poll (the C(ceptra.backfill.audit) callback
    prints the figures).
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reports which partitions a job would cover; starts nothing.
  diff_mode:
    support: none
options:
  part_ids:
    description:
      - Partitions to replay. Required unless O(needs_replay_only=true), where it limits the selection.
      - An explicit list always starts a job (C(changed=true)).
    type: list
    elements: str
  needs_replay_only:
    description:
      - Replay only partitions whose shadow reports C(needs_replay) (of O(bundle_id), or of any
        bundle that is not active).
    type: bool
    default: false
  bundle_id:
    description: With O(needs_replay_only=true), look only at this bundle's shadows.
    type: str
  job_id:
    description:
      - Read this job's progress once and start nothing (RV(done) tells whether it ended). A failed
        job fails the task with its error.
    type: str
  reason:
    description: Why the job runs (kept in the job and the audit log).
    type: str
    default: ceptra.backfill.wal_replay
  wait:
    description: Wait until the job completes (fail when it fails).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the job.
    type: int
    default: 600
  wait_interval:
    description: Seconds between two polls of the job.
    type: float
    default: 2
seealso:
  - module: ceptra.backfill.bundle_info
  - module: ceptra.backfill.activation
"""

EXAMPLES = r"""
- name: Replay every partition whose shadow needs it
  ceptra.backfill.wal_replay:
    needs_replay_only: true
    bundle_id: "{{ uploaded.bundle_id }}"
  register: replay

- name: Start the replay without waiting
  ceptra.backfill.wal_replay:
    needs_replay_only: true
    bundle_id: "{{ uploaded.bundle_id }}"
    wait: false
  register: started

- name: Wait for it, showing progress on each poll
  ceptra.backfill.wal_replay:
    job_id: "{{ started.job_id }}"
  register: job
  until: job.done
  retries: 300
  delay: 2
  when: started.job_id is defined

- name: Replay partitions 0 and 3 now
  ceptra.backfill.wal_replay:
    part_ids: ["0", "3"]
    reason: INC-4711 rebuild after disk swap
"""

RETURN = r"""
part_ids:
  description: Partitions the job covers (empty when nothing needed a replay).
  returned: always
  type: list
  elements: str
needing_replay:
  description: Partitions whose shadow needed a WAL replay when the module looked.
  returned: when O(needs_replay_only=true)
  type: list
  elements: str
job_id:
  description: The replay job's id.
  returned: when a job was started
  type: str
state:
  description: The job's state (V(running), V(completed)).
  returned: when a job was started
  type: str
partitions:
  description: Per partition C(from_index), C(to_index), C(replayed_index), C(done), and the progress
    figures C(events_done), C(events_total) and C(status).
  returned: always
  type: dict
  sample: {"0": {"from_index": 120, "to_index": 480, "replayed_index": 480, "done": true,
                 "events_done": 360, "events_total": 360, "status": "done"}}
done:
  description: True when the job ended (or no job was needed).
  returned: always
  type: bool
resumed:
  description: True when a running job of an earlier run covered the partitions and was waited for.
  returned: when such a job was found
  type: bool
job:
  description: The job document as the cluster returned it.
  returned: always
  type: dict
would_start:
  description: In check mode, true when a real run would start a job.
  returned: in check mode when a job would start
  type: bool
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._activation import run_wal_replay
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "part_ids": {"type": "list", "elements": "str"},
        "needs_replay_only": {"type": "bool", "default": False},
        "bundle_id": {"type": "str"},
        "job_id": {"type": "str"},
        "reason": {"type": "str", "default": "ceptra.backfill.wal_replay"},
        "wait": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 600},
        "wait_interval": {"type": "float", "default": 2},
    })
    params = module.params
    with module.reporting("run the WAL replay job"):
        result = run_wal_replay(module.client, part_ids=params["part_ids"], needs_replay_only=params["needs_replay_only"],
                                bundle_id=params["bundle_id"], reason=params["reason"], wait=params["wait"],
                                timeout=params["wait_timeout"], interval=params["wait_interval"],
                                check_mode=module.check_mode, job_id=params["job_id"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
