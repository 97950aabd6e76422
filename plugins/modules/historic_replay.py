#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replay historic events into a CEPtra cluster for a bounded time slice."""

from __future__ import annotations

DOCUMENTATION = r"""
module: historic_replay
short_description: Replay historic events into CEPtra, resumable and lag-aware
version_added: 0.1.0
description:
  - Streams archived events from a historic database (SQLite or PostgreSQL) through the
    cluster's ingest path (the NDJSON append stream), partition by partition in strict
    order, flagged C(REPLAY) and carrying a replay session so that nothing is applied twice.
  - Replays for at most O(time_budget) seconds, then returns progress with C(done). Loop a
    task with C(until) on C(result.done) to show progress each round; the cursor store keeps
    per-partition positions, so a restarted job (or another AWX node) resumes where the
    last one stopped. Also usable with C(async).
  - Throttles each partition on the cluster's C(apply_lag_ms) and C(replication_lag_ms)
    (pause or slow down above the thresholds, speed up when healthy) and aborts above a
    critical multiple. A pause file or the cursor store's pause flag pauses every worker.
  - A permanent refusal of an event stops that partition with a report naming the event,
    its position and the reason; the other partitions continue. The task fails once every
    other partition has finished (unless O(fail_on_stopped=false)).
  - With O(worker_hosts) and O(this_host) every host of a worker group replays its own
    deterministic share of the partitions (share a PostgreSQL cursor store between them).
  - In check mode returns the plan (per partition events, range, estimated duration) and
    sends nothing.
  - See C(docs/replay.md) in the collection for the design, the guarantees and tuning.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Returns the plan (per partition events, positions, estimated duration) without sending anything.
  diff_mode:
    support: none
    details: Replay progress has no before/after to show.
options:
  source:
    description:
      - The historic source, see C(docs/historic-source.md). Keys C(type) (V(sqlite) or V(postgresql)),
        C(path) (SQLite file), C(dsn) (PostgreSQL), C(table) (default V(ceptra_history)),
        C(columns) (logical name -> column name), C(order_by), C(max_event_bytes).
      - A password in C(dsn) (C(password=...) or C(postgresql://user:password@host/db)) is a no-log
        value, masked in every result, warning and message (also at C(-vvv)); E(PGPASSWORD) or a
        C(.pgpass) file keeps it out of the playbook altogether.
    type: dict
    required: true
  cursor_store:
    description:
      - 'Where per-partition cursors live: C({type: sqlite, path: FILE}) (one host) or
        C({type: postgresql, dsn: DSN, table: NAME}) (workers on several hosts).'
      - A password in C(dsn) is masked like the one of O(source).
    type: dict
    required: true
  run_id:
    description: Name of this replay run; cursors, replay sessions and audit records are keyed by it. No C(/).
    type: str
    required: true
  partitions:
    description: Partitions to replay (default every partition found in the source).
    type: list
    elements: str
  window_start_ns:
    description: Only events with event time at or after this (ns since the epoch), for a missing window.
    type: int
  window_end_ns:
    description: Only events with event time before this (ns since the epoch).
    type: int
  order_by:
    description: Order within a partition; overrides C(source.order_by).
    type: str
    choices: [raft_index, event_time]
  worker_hosts:
    description:
      - Every host of the worker group (same list on every host); partitions are dealt among them.
      - The first real run records the list in the cursor store; a worker passing another list
        fails with the recorded one (two lists would deal overlapping shares).
      - Pass the complete list explicitly (an extra variable, the same for every worker). In an AWX
        sliced job C(groups[...]) holds only the slice's own hosts, so each slice would deal a
        different table; C(playbooks/replay_workers.yml) takes the list as C(replay_workers_hosts).
    type: list
    elements: str
  reassign_workers:
    description:
      - Record O(worker_hosts) as the run's worker group, replacing the one recorded before, for a
        worker group changed on purpose. Stop every worker of the run first.
    type: bool
    default: false
  this_host:
    description: This worker's name in O(worker_hosts), usually C({{ inventory_hostname }}).
    type: str
  time_budget:
    description: Seconds to replay in this call; V(0) replays to completion. A negative value fails the task.
    type: float
    default: 60
  apply_lag_threshold_ms:
    description: Apply-lag guardrail per partition (ms); the throttle keeps the lag under it.
    type: float
    default: 200
  replication_lag_threshold_ms:
    description: Replication-lag guardrail per partition (ms).
    type: float
    default: 250
  critical_factor:
    description: Abort the run when a lag stays above this multiple of its threshold.
    type: float
    default: 5
  throttle:
    description: Poll the lags and throttle; V(false) sends as fast as the cluster acknowledges.
    type: bool
    default: true
  initial_rate:
    description: Starting send rate per partition (events/s) before the throttle adapts.
    type: float
    default: 500
  max_rate:
    description: Upper bound of the send rate per partition (events/s); a positive number.
    type: float
  max_window:
    description: Upper bound of events in flight per request; the cluster's credit hint may lower it.
    type: int
    default: 1024
  batch_events:
    description: Rows read from the source per query.
    type: int
    default: 2000
  max_parallel_partitions:
    description: Partitions replayed at the same time by this host (one sender thread each).
    type: int
    default: 8
  use_replay_sessions:
    description:
      - Send C(replay_session) and C(replay_seq) so the cluster drops repeats exactly.
      - V(false) falls back to C(event_id) dedup, which only holds within the cluster's retry
        window and dedup capacity; the result then carries a warning.
    type: bool
    default: true
  pause_file:
    description: While this file exists every worker of the run pauses.
    type: path
  on_bad_row:
    description:
      - What to do with a malformed row (bad JSON payload, missing event_id, oversized event).
      - V(stop) stops the partition at the row with a report; V(dead_letter) writes it to
        O(dead_letter_path) and continues. Rows are never dropped silently.
    type: str
    choices: [stop, dead_letter]
    default: stop
  dead_letter_path:
    description: JSON Lines file for bad rows (required with O(on_bad_row=dead_letter)).
    type: path
  max_event_bytes:
    description:
      - Events larger than this (serialised) are bad rows. Passed to the source as well (unless
        O(source) has its own C(max_event_bytes)), so its own size check uses this value.
    type: int
    default: 1048576
  find_copies:
    description:
      - Look for later copies of an event in the history (same C(event_id) and event time), in
        either O(order_by). A copy is skipped (not sent) together with the events around it (no
        extra request, commit or audit record), counted in RV(duplicates_skipped) and listed in
        its batch's audit record; it never stops a partition.
      - V(false) sends copies as ordinary events. The cluster's C(event_id) dedup (every event,
        replay sessions included) answers each C(duplicate) and applies it once, provided the
        copy arrives within the cluster's C(client_retry_window_s) of its original, which is always
        the case in V(event_time) order (copies are adjacent); in V(raft_index) order a copy arriving later is
        refused C(PERMANENT_RETRY_EXPIRED) and stops its partition.
      - A C(find_copies) key inside O(source) wins over this option.
    type: bool
    default: true
  metrics_textfile:
    description: Prometheus textfile (node_exporter textfile collector) rewritten atomically every second.
    type: path
  pushgateway_url:
    description:
      - Prometheus Pushgateway base URL (V(http://) or V(https://) with a host); metrics are pushed at
        the end of each call. A failed push is a warning, never a failure.
      - Credentials in the URL (C(user:password@)) are no-log values, masked in every output.
    type: str
  audit_file:
    description: Local append-only JSON Lines audit file, one record per replay batch.
    type: path
  operator:
    description: Operator identity for audit records (default E(CEPTRA_ACTOR) or E(CEPTRA_OPERATOR), else user@host).
    type: str
  cp_audit:
    description: Write summary records (run start/end, partition done/stopped) to the CP audit log.
    type: bool
    default: true
  retry_stopped:
    description:
      - Retry partitions that stopped on a permanent error (after the cause was fixed).
      - An event the cluster refused C(PERMANENT_RETRY_EXPIRED) is never sent again, it is passed
        (counted in C(retry_expired) per partition) and the partition continues after it.
    type: bool
    default: false
  fail_on_stopped:
    description: Fail the task when the run finished with stopped partitions.
    type: bool
    default: true
  estimated_rate:
    description: Events/s per partition used for the plan's duration estimate.
    type: float
    default: 2000
  durability_wait_s:
    description: How long a partition waits for a durability fence to clear before it stops.
    type: float
    default: 300
seealso:
  - module: ceptra.backfill.historic_replay_info
"""

EXAMPLES = r"""
- name: Show what the replay would do
  ceptra.backfill.historic_replay:
    source: {type: sqlite, path: /var/lib/ceptra/history.db}
    cursor_store: {type: sqlite, path: /var/lib/ceptra/replay-cursors.db}
    run_id: incident-4711
  check_mode: true
  register: plan

- name: Replay in one-minute slices until done, showing progress each round
  ceptra.backfill.historic_replay:
    source: {type: postgresql, dsn: "host=archive dbname=history user=replay"}
    cursor_store: {type: postgresql, dsn: "host=archive dbname=ops user=replay", table: replay_cursors}
    run_id: incident-4711
    window_start_ns: 1732600000000000000
    window_end_ns: 1732603600000000000
    worker_hosts: "{{ replay_workers_hosts }}"   # the complete worker list, an extra variable
    this_host: "{{ inventory_hostname }}"
    time_budget: 60
    audit_file: /var/log/ceptra/replay-audit.jsonl
    metrics_textfile: /var/lib/node_exporter/textfile/ceptra_replay.prom
  register: replay
  until: replay is failed or replay.done
  retries: 10000
  delay: 0
"""

RETURN = r"""
done:
  description: True when every partition of this host finished (done, stopped or refused).
  returned: always
  type: bool
events_done:
  description: Rows processed so far (acknowledged events plus skipped copies; all calls of the run, this host's partitions).
  returned: always
  type: int
events_total:
  description: Events to replay in total for this host's partitions.
  returned: always
  type: int
duplicates_skipped:
  description:
    - Later copies of an event found in the history so far in this run, over all time slices
      (skipped, not sent; kept with the cursor; they count in RV(events_done) as rows
      processed). Per partition in RV(partitions).
  returned: always
  type: int
events_sent:
  description: Events acknowledged during this call.
  returned: always
  type: int
rate_eps:
  description: Current aggregate rate (events/s) of running partitions.
  returned: always
  type: float
eta_s:
  description: Estimated seconds to completion (null until a rate is known).
  returned: always
  type: float
partitions:
  description: Per partition C(status), C(events_done), C(events_total), C(position), C(rate_eps), C(eta_s),
    C(apply_lag_ms), C(replication_lag_ms), C(historic_lag_s), C(duplicates_skipped), C(dead_lettered),
    C(retry_expired), C(report), and C(failed_requests) (append-stream requests of this call that failed or were
    cut short and were resent; the first one is also a warning, so a slice that ends short never looks healthy).
  returned: always
  type: dict
stopped:
  description: Reports of partitions stopped on a permanent error (C(part_id), C(event_id), C(position), C(seq),
    C(reason), C(message)).
  returned: always
  type: list
  elements: dict
refused:
  description:
    - Reports of partitions refused because rows of them have NULL in an ordering column
      (C(part_id), C(columns), C(rows), C(reason) V(UNORDERABLE_ROWS), C(message)). Nothing of such a
      partition is sent; the others are replayed; once they finished the task fails naming the
      partition and the column(s). Check mode lists them too.
  returned: always
  type: list
  elements: dict
dedup:
  description: V(replay_session) or V(event_id) (the fallback; see the warnings).
  returned: always
  type: str
aborted:
  description: Why the run aborted (critical lag), else null.
  returned: always
  type: str
plan:
  description: In check mode, the plan (per partition events, positions, estimated duration).
  returned: in check mode
  type: dict
assigned_partitions:
  description: The partitions this host replays.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import engine


def main():
    """Run the module."""
    module = CeptraModule(argument_spec=engine.module_argument_spec(run=True),
                          required_together=[["worker_hosts", "this_host"]],
                          required_if=[["on_bad_row", "dead_letter", ["dead_letter_path"]]])
    params = module.params
    module.no_log_credentials(*engine.credential_values(params))
    if params["time_budget"] < 0:
        module.fail_json(msg="time_budget must be 0 (replay to completion) or more seconds, got %s" % params["time_budget"])
    with module.reporting("replay run %s" % params["run_id"]):
        run = engine.open_run(engine.config_from_params(params), module.client, engine.source_spec_from_params(params),
                              params["cursor_store"], params["worker_hosts"], params["this_host"],
                              register_workers=not module.check_mode, reassign_workers=params["reassign_workers"])
        try:
            assigned = list(run.cfg.part_ids)
            if module.check_mode:
                module.exit_json(assigned_partitions=assigned, **engine.check_mode_result(run))
            result = run.run(time_budget_s=params["time_budget"] or None)
        finally:
            engine.close_run(run)
    for warning in result.pop("warnings"):
        module.warn(warning)
    result["assigned_partitions"] = assigned
    failure = engine.run_failure(result, params["run_id"], params["fail_on_stopped"])
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
