# Internal to ceptra.backfill (not a public API): partition fan-out over replay workers.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which partitions this worker replays.

Rule: sort the partitions in natural numeric order ("2" before "10") and the worker hosts
by name, then deal the partitions round-robin: partition number ``i`` (in that order) goes
to host ``i mod N``. Every host computes the same table from the same inputs, so the
shares are disjoint and together cover every partition, with no coordination; the
sizes differ by at most one (perfect balance by partition count). Round-robin was chosen
over rendezvous hashing because the partition list is fixed for a run, so balance matters
more than minimal movement when a host is added (a re-run with another host list starts
from the shared cursor store anyway, so moving a partition costs nothing).

``slice_partitions`` applies the same rule to a numbered slice (``slice_index`` of
``slice_count``), for callers that know their slice number rather than a host list.
"""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError


class FanoutError(ReplayError, ValueError):
    """Bad fan-out input; the message says what to fix."""


def _sorted_partitions(part_ids):
    if isinstance(part_ids, (str, bytes)) or part_ids is None:
        raise FanoutError("part_ids must be a list of partition ids, got %r" % (part_ids,))
    return sort_ids(part_ids)


def assignment_table(part_ids, worker_hosts):
    """The whole assignment: ``{host: [part_id, ...]}`` for every host (some may get none)."""
    if isinstance(worker_hosts, (str, bytes)) or not worker_hosts:
        raise FanoutError("worker_hosts must be a non-empty list of host names, got %r" % (worker_hosts,))
    hosts = sorted({str(h) for h in worker_hosts})
    table = {host: [] for host in hosts}
    for index, part_id in enumerate(_sorted_partitions(part_ids)):
        table[hosts[index % len(hosts)]].append(part_id)
    return table


def assign_partitions(part_ids, worker_hosts, this_host):
    """The partitions ``this_host`` replays: deterministic, disjoint across hosts, covering all.

    The result does not depend on the order of ``worker_hosts`` or ``part_ids`` (both are
    sorted), nor on duplicates in them.
    """
    table = assignment_table(part_ids, worker_hosts)
    if str(this_host) not in table:
        raise FanoutError("this host %r is not in the worker group %s: every worker must pass the same complete "
                          "host list and its own name from that list" % (this_host, sorted(table)))
    return table[str(this_host)]


def check_worker_group(store, run_id, worker_hosts, register=True, replace=False):
    """Make sure every worker of a run deals from the same host list.

    The first worker of a run records its list in the cursor store; a worker that passes
    another list is refused, because two different lists deal overlapping shares (two
    workers on one partition) or leave partitions out. The usual cause is an AWX sliced
    job whose playbook takes the list from ``groups[...]``: each slice sees only its own
    hosts. ``register=False`` only compares (check mode, info); ``replace=True`` records
    the new list (the operator changed the group on purpose, with every worker stopped),
    and with ``register=False`` too (check mode of a reassignment) neither compares nor writes.
    """
    hosts = sorted({str(h) for h in worker_hosts})
    if replace and not register:
        return hosts
    if register:
        recorded = store.register_worker_group(run_id, hosts, replace=replace)
    else:
        recorded = store.worker_group(run_id)
    if recorded is not None and recorded != hosts:
        raise FanoutError(
            "run %s deals its partitions over the worker group %s, but this worker passes %s. Every worker of "
            "a run must pass the same complete list (in an AWX sliced job groups[...] holds only the slice's own "
            "hosts: pass the whole list as an extra variable, as playbooks/replay_workers.yml takes it in "
            "replay_workers_hosts; see docs/historic-source.md). If the group changed "
            "on purpose, stop every worker of the run and rerun with reassign_workers: true "
            "(CLI --reassign-workers)." % (run_id, recorded, hosts))
    return hosts


def slice_partitions(part_ids, slice_index, slice_count):
    """The partitions of slice ``slice_index`` (0-based) out of ``slice_count`` slices.

    For callers that are told their slice number (e.g. one workflow node per slice with an
    extra variable). AWX job slicing itself passes no slice number to the playbook: each
    slice job only sees its own hosts, so there use ``assign_partitions`` with the complete
    worker list passed as an extra variable (see docs/historic-source.md).
    """
    for name, value in (("slice_index", slice_index), ("slice_count", slice_count)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise FanoutError("%s must be an integer, got %r" % (name, value))
    if slice_count < 1:
        raise FanoutError("slice_count must be at least 1, got %d" % slice_count)
    if not 0 <= slice_index < slice_count:
        raise FanoutError("slice_index must be in 0..%d (0-based), got %d" % (slice_count - 1, slice_index))
    return [p for i, p in enumerate(_sorted_partitions(part_ids)) if i % slice_count == slice_index]
