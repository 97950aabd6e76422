#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report the progress of a historic replay run without sending anything."""

from __future__ import annotations

DOCUMENTATION = r"""
module: historic_replay_info
short_description: Progress of a CEPtra historic replay run
version_added: 0.1.0
description:
  - Reads the run's cursors from the cursor store and the remaining events from the historic
    source, and reports per partition the status, events done and remaining, position,
    stop report and an estimated duration. Sends no event.
  - With O(include_lag=true) (default) also reads the partitions' current C(apply_lag_ms) and
    C(replication_lag_ms) from the cluster's C(/readyz); a cluster that cannot be reached
    gives a warning, not a failure.
  - Also reports whether the run is paused (cursor-store flag).
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
    details: Replay progress has no before/after to show.
options:
  source:
    description: The historic source, as for M(ceptra.backfill.historic_replay) (a password in C(dsn) is masked).
    type: dict
    required: true
  cursor_store:
    description: The cursor store, as for M(ceptra.backfill.historic_replay) (a password in C(dsn) is masked).
    type: dict
    required: true
  run_id:
    description: The replay run.
    type: str
    required: true
  partitions:
    description: Partitions to report (default every partition found in the source).
    type: list
    elements: str
  window_start_ns:
    description: The run's window start (ns), as given to the replay.
    type: int
  window_end_ns:
    description: The run's window end (ns), as given to the replay.
    type: int
  order_by:
    description: The run's order (must match the replay's).
    type: str
    choices: [raft_index, event_time]
  worker_hosts:
    description: The worker group; with O(this_host), report only that host's share.
    type: list
    elements: str
  this_host:
    description: A host of O(worker_hosts).
    type: str
  estimated_rate:
    description: Events/s per partition used for the duration estimate.
    type: float
    default: 2000
  include_lag:
    description: Read current apply and replication lag per partition from the cluster.
    type: bool
    default: true
seealso:
  - module: ceptra.backfill.historic_replay
"""

EXAMPLES = r"""
- name: How far is the replay?
  ceptra.backfill.historic_replay_info:
    source: {type: sqlite, path: /var/lib/ceptra/history.db}
    cursor_store: {type: sqlite, path: /var/lib/ceptra/replay-cursors.db}
    run_id: incident-4711
  register: progress

- name: Show it
  ansible.builtin.debug:
    msg: "{{ progress.events_done }}/{{ progress.events_total }} done={{ progress.done }}"
"""

RETURN = r"""
done:
  description: True when every reported partition finished (done, stopped or nothing left).
  returned: always
  type: bool
paused:
  description: True while the run's pause flag is raised in the cursor store.
  returned: always
  type: bool
events_done:
  description: Events acknowledged so far.
  returned: always
  type: int
events_total:
  description: Events done plus events remaining.
  returned: always
  type: int
events_remaining:
  description: Events not replayed yet (partitions not done or stopped).
  returned: always
  type: int
estimated_duration_s:
  description: Estimated seconds for the remaining events at O(estimated_rate).
  returned: always
  type: float
partitions:
  description: Per partition C(status), C(events_done), C(events_remaining), C(position), C(first_position),
    C(last_position), C(estimated_duration_s), C(report), C(apply_lag_ms), C(replication_lag_ms),
    C(duplicates_skipped), C(dead_lettered) (rows passed without sending so far in the run).
  returned: always
  type: dict
stopped:
  description: Reports of stopped partitions.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import partition_lags
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import engine


def _add_lags(module, plan):
    """Current apply and replication lag per partition, from /readyz (a warning when it cannot be read)."""
    try:
        lags = partition_lags(module.client)
    except CeptraError as err:   # progress is still useful without the cluster
        module.warn("could not read lags from the cluster: %s" % err.message)
        lags = {}
    for part_id, entry in plan["partitions"].items():
        entry["apply_lag_ms"], entry["replication_lag_ms"] = lags.get(part_id, (None, None))


def main():
    """Run the module."""
    spec = engine.module_argument_spec()
    spec.update(include_lag={"type": "bool", "default": True})
    module = CeptraModule(argument_spec=spec, required_together=[["worker_hosts", "this_host"]])
    params = module.params
    module.no_log_credentials(*engine.credential_values(params))
    with module.reporting("read the progress of replay run %s" % params["run_id"]):
        run = engine.open_run(engine.config_from_params(params), module.client, engine.source_spec_from_params(params),
                              params["cursor_store"], params["worker_hosts"], params["this_host"],
                              register_workers=False)
        try:
            plan = run.plan()
            paused = bool(run.store.is_paused(params["run_id"]))
        finally:
            engine.close_run(run)
        if params["include_lag"]:
            _add_lags(module, plan)
    parts = plan["partitions"]
    module.exit_json(
        changed=False, done=plan["done"], paused=paused,
        events_done=sum(p["events_done"] for p in parts.values()),
        events_total=sum(p["events_total"] for p in parts.values()),
        events_remaining=plan["events_remaining"], estimated_duration_s=plan["estimated_duration_s"],
        partitions=parts, stopped=[p["report"] for p in parts.values() if p["report"]],
    )


if __name__ == "__main__":
    main()
