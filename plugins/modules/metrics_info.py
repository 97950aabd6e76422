#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: metrics_info
short_description: Read selected CEPtra metrics per partition
version_added: 0.1.0
description:
  - Reads the Prometheus exposition at C(GET /metrics) and returns the selected series per
    partition under their canonical names.
  - Metric aliases are resolved (C(ceptra_)/C(clustor_) prefixes, legacy C(*_seconds) names
    converted to milliseconds, C(ceptra_partition_ready_ratio)), and the label
    C(partition_id) is read as C(part_id).
options:
  names:
    description:
      - Metrics to return, by canonical name or any accepted spelling.
      - The default is the set the backfill gates on - V(apply_lag_ms), V(replication_lag_ms),
        V(ceptra_definition_warmup_pending), V(ceptra_finalized_horizon_stall),
        V(ceptra_partition_ready), V(ceptra_ready_partitions_ratio), V(queue_depth),
        V(ap_late_events_total), V(config_version_current).
      - V(*) returns every series.
    type: list
    elements: str
  partitions:
    description:
      - Only return series of these partition ids (cluster-wide series are always returned).
      - A partition no series of C(/metrics) names fails the task, naming the partitions there are.
    type: list
    elements: str
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
"""

EXAMPLES = r"""
- name: Read apply and replication lag of partitions 2 and 3
  ceptra.backfill.metrics_info:
    names: [apply_lag_ms, replication_lag_ms]
    partitions: ["2", "3"]
  register: lag

- name: Stop when any partition lags more than 200 ms
  ansible.builtin.assert:
    that: lag.partitions | dict2items | map(attribute='value.apply_lag_ms') | max <= 200
"""

RETURN = r"""
partitions:
  description:
    - Per partition id, the selected metrics. A series with labels besides C(part_id) is a
      dict keyed by the other labels (C(type=commit_apply)).
  returned: success
  type: dict
  sample:
    "0": {"apply_lag_ms": 12.0, "replication_lag_ms": 45.0, "queue_depth": {"type=commit_apply": 7.0}}
cluster:
  description: The selected series that carry no labels (cluster-wide values).
  returned: success
  type: dict
  sample: {"ceptra_ready_partitions_ratio": 1.0, "config_version_current": 3.0}
metrics:
  description:
    - Per canonical name, every selected series keyed by its part_id (V("") for a
      cluster-wide series) or by C(part_id=..,label=value) when it has more labels.
  returned: success
  type: dict
  sample: {"apply_lag_ms": {"0": 12.0, "1": 340.0}}
missing:
  description: Requested metrics the cluster did not expose.
  returned: success
  type: list
  elements: str
  sample: ["ceptra_finalized_horizon_stall"]
unknown_partitions:
  description: Partitions of O(partitions) that C(/metrics) does not name.
  returned: failure, when O(partitions) names partitions that do not exist
  type: list
  elements: str
"""

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._metrics import canonical_name, read_series, series_key
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids

DEFAULT_NAMES = [
    "apply_lag_ms", "replication_lag_ms", "ceptra_definition_warmup_pending", "ceptra_finalized_horizon_stall",
    "ceptra_partition_ready", "ceptra_ready_partitions_ratio", "queue_depth", "ap_late_events_total",
    "config_version_current",
]


def summarize(samples, wanted_partitions=None):
    """Group canonical samples into the module's ``partitions``, ``cluster`` and ``metrics`` views."""
    partitions, cluster, metrics = {}, {}, {}
    for name, labels, value in samples:
        pid = labels.get("part_id")
        if pid is not None and wanted_partitions is not None and pid not in wanted_partitions:
            continue
        metrics.setdefault(name, {})[series_key(labels)] = value
        other = {k: v for k, v in labels.items() if k != "part_id"}
        if pid is None:
            if other:
                cluster.setdefault(name, {})[series_key(other)] = value
            else:
                cluster[name] = value
            continue
        entry = partitions.setdefault(pid, {})
        if other:
            entry.setdefault(name, {})[series_key(other)] = value
        else:
            entry[name] = value
    ordered = {pid: partitions[pid] for pid in sort_ids(partitions)}
    return ordered, cluster, metrics


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={"names": {"type": "list", "elements": "str"},
                                         "partitions": {"type": "list", "elements": "str"}})
    names = module.params["names"] or DEFAULT_NAMES
    select_all = "*" in names
    with module.reporting("read the cluster metrics (/metrics)"):
        response = module.client.request("GET", "metrics", headers={"Accept": "text/plain"})
    samples = read_series(response.text, None if select_all else names)
    wanted = set(module.params["partitions"]) if module.params["partitions"] else None
    if wanted:
        # every series of the exposition names the partitions that exist, not only the selected ones
        known = summarize(read_series(response.text, None), None)[0]
        unknown = _partitions.unknown_ids(module.params["partitions"], known)
        if unknown:
            module.fail_json(msg=_partitions.describe_unknown(unknown, known, "/metrics"), unknown_partitions=unknown)
    partitions, cluster, metrics = summarize(samples, wanted)
    found = {name for name, _labels, _value in samples}
    missing = [] if select_all else [canonical_name(name) for name in names if canonical_name(name) not in found]
    module.exit_json(changed=False, partitions=partitions, cluster=cluster, metrics=metrics, missing=missing)


if __name__ == "__main__":
    main()
