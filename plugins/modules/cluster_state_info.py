#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_state_info
short_description: Read the CEPtra cluster and partition state manifests
version_added: 0.1.0
description:
  - Reads C(GET /v1/state) and returns the cluster summary and one manifest per partition
    (leader, commit/applied index, WAL range, checkpoint, def_version, ingress gate,
    finalized horizon, dedup table, replay sessions, unavailable windows).
  - Also returns the outage spans (RV(unavailable_windows)) per partition, the source of the
    missing window of a partial recovery.
options:
  partitions:
    description:
      - Only return these partition ids (default all). Unknown ids are an error.
    type: list
    elements: str
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
"""

EXAMPLES = r"""
- name: Read the cluster state
  ceptra.backfill.cluster_state_info:
    url: https://ceptra.example:8443
    client_cert: /etc/ceptra/operator.pem
    client_key: /etc/ceptra/operator-key.pem
    ca_path: /etc/ceptra/ca.pem
  register: state

- name: Show the outage windows of partition 3
  ansible.builtin.debug:
    var: state.unavailable_windows['3']
"""

RETURN = r"""
cluster:
  description: The cluster summary (epoch, partition count, test mode).
  returned: success
  type: dict
  sample: {"epoch": 1, "partitions": 4, "test_mode": true}
partitions:
  description: One manifest per partition, ordered by partition id, with C(part_id) set.
  returned: success
  type: list
  elements: dict
  sample:
    - part_id: "0"
      leader: ceptra-0
      commit_index: 120
      applied_index: 118
      ingress_gate: open
      warmup: false
      unavailable_windows: []
partition_ids:
  description: The ids of the returned partitions.
  returned: success
  type: list
  elements: str
  sample: ["0", "1", "2", "3"]
unavailable_windows:
  description: Per partition id, the spans during which the partition refused appends.
  returned: success
  type: dict
  sample: {"3": [{"start_ts_ns": 1732600000000000000, "end_ts_ns": 1732600060000000000}]}
"""

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def _partition_list(value):
    """Partitions as a list in partition order, each with ``part_id`` set (from either shape of /v1/state)."""
    return [dict(entry if isinstance(entry, dict) else {}, part_id=part_id)
            for part_id, entry in _partitions.sorted_items(value)]


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={"partitions": {"type": "list", "elements": "str"}})
    with module.reporting("read the cluster state"):
        body = module.client.get_json("state")
    if not isinstance(body, dict):
        module.fail_json(msg="Could not read the cluster state: /v1/state did not return a JSON object")

    partitions = _partition_list(body.get("partitions"))
    wanted = module.params["partitions"]
    if wanted:
        known = {p["part_id"] for p in partitions}
        unknown = [pid for pid in wanted if pid not in known]
        if unknown:
            module.fail_json(msg="Unknown partition id(s) %s; the cluster has partitions %s"
                             % (", ".join(unknown), ", ".join(p["part_id"] for p in partitions) or "none"))
        partitions = [p for p in partitions if p["part_id"] in set(wanted)]
    cluster = body.get("cluster") if isinstance(body.get("cluster"), dict) else {}
    module.exit_json(
        changed=False,
        cluster=cluster,
        partitions=partitions,
        partition_ids=[p["part_id"] for p in partitions],
        unavailable_windows={p["part_id"]: list(p.get("unavailable_windows") or []) for p in partitions},
    )


if __name__ == "__main__":
    main()
