#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare two CEPtra metrics snapshots and report which metrics, lanes and panes differ."""

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_diff
short_description: Compare two CEPtra metrics snapshots
version_added: 0.1.0
description:
  - Compares two metrics snapshots (see M(ceptra.backfill.metrics_snapshot)) and reports which
    metrics, tiers, lanes and panes exist on one side only and which panes hold different
    values (with both values). The comparison is deterministic (sorted) and tolerant of
    unknown extra fields.
  - 'The left side is partition O(part_id) of the cluster at O(url), or a saved file O(left_src).
    The right side is partition O(other_part_id) (default O(part_id)) of the same cluster, of a
    second cluster (O(other)), or a saved file O(right_src). This covers two partitions of one
    cluster, two clusters, and a saved file against a live partition or another file.'
  - Only the O(sections) are compared; C(part_id), C(applied_index) and C(digest) are reported,
    not compared (two partitions that accepted the same events in a different order hold equal
    aggregates at different indexes).
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
options:
  part_id:
    description:
      - Partition of the left snapshot (live, or picked from O(left_src) when the file holds several).
    type: str
  other_part_id:
    description:
      - Partition of the right snapshot (live, or picked from O(right_src)). Defaults to O(part_id).
    type: str
  left_src:
    description: A saved snapshot file (from O(ceptra.backfill.metrics_snapshot#module:dest)) for the left side.
    type: path
  right_src:
    description: A saved snapshot file for the right side.
    type: path
  other:
    description:
      - Connection to a second cluster for the right side. Mutually exclusive with O(right_src).
    type: dict
    suboptions:
      url:
        description: Base URL of the second cluster's control plane.
        type: str
        required: true
      token:
        description: Bearer token for the second cluster.
        type: str
      client_cert:
        description: Client certificate (PEM) for mutual TLS with the second cluster.
        type: path
      client_key:
        description: Private key (PEM) of O(other.client_cert).
        type: path
      ca_path:
        description: CA bundle that signed the second cluster's server certificate.
        type: path
      validate_certs:
        description: Verify the second cluster's certificate.
        type: bool
        default: true
      timeout:
        description: Seconds to wait for a connection and for each response.
        type: int
        default: 30
      retries:
        description: Retries on connection errors and 429/502/503/504.
        type: int
        default: 5
  sections:
    description: Top-level snapshot sections to compare.
    type: list
    elements: str
    default: [metrics, late]
  tolerance:
    description: Absolute tolerance for numbers (0 compares exactly; snapshots are meant to be bit-identical).
    type: float
    default: 0
  max_differences:
    description: Cap on the entries returned per list (the counts stay exact).
    type: int
    default: 100
  fail_on_difference:
    description: Fail the task when the snapshots differ.
    type: bool
    default: false
  settled_before_ns:
    description:
      - Compare only the panes that start before this event time (ns since the epoch); newer panes
        of both sides are left out. For clusters that keep receiving live traffic while they are
        compared. Mutually exclusive with O(settle_ms).
    type: int
  settle_ms:
    description:
      - Compare only the panes that start more than this many milliseconds before the task
        started (the cut-off is taken before either snapshot is read). Choose it larger than the
        pane size plus the time an event takes to reach both sides.
    type: int
notes:
  - Live snapshots need a cluster in test mode and the C(observer) role.
  - O(url) is required even when both sides are files (it is usually set once per play).
seealso:
  - module: ceptra.backfill.metrics_snapshot
"""

EXAMPLES = r"""
- name: Two partitions that accepted the same events must match
  ceptra.backfill.snapshot_diff:
    part_id: "0"
    other_part_id: "1"
    fail_on_difference: true

- name: The rebuilt cluster against the production cluster
  ceptra.backfill.snapshot_diff:
    part_id: "3"
    other:
      url: https://ceptra-prod.example:8443
      client_cert: /etc/ceptra/observer.pem
      client_key: /etc/ceptra/observer-key.pem
  register: cmp

- name: Partition 2 now against the snapshot saved before the backfill
  ceptra.backfill.snapshot_diff:
    left_src: /var/lib/ceptra-backfill/before.json
    part_id: "2"
"""

RETURN = r"""
equal:
  description: True when the compared sections are equal.
  returned: always
  type: bool
only_left:
  description: Metrics, tiers, lanes or panes only in the left snapshot (with C(panes) counts or the C(value)).
  returned: always
  type: list
  elements: dict
  sample: [{"section": "metrics", "path": "metrics/anti_cheat_flags/raw/player_id=p1", "metric": "anti_cheat_flags",
            "tier": "raw", "lane": "player_id=p1", "panes": 3}]
only_right:
  description: Metrics, tiers, lanes or panes only in the right snapshot.
  returned: always
  type: list
  elements: dict
value_differences:
  description: Entries present on both sides with different values (C(left), C(right)).
  returned: always
  type: list
  elements: dict
differing_metrics:
  description: Names of the metrics with any difference.
  returned: always
  type: list
  elements: str
counts:
  description: Exact number of C(only_left), C(only_right) and C(value_differences) entries.
  returned: always
  type: dict
truncated:
  description: True when a list was cut to O(max_differences).
  returned: always
  type: bool
settled_before_ns:
  description: The cut-off of the compared panes (null when every pane was compared).
  returned: always
  type: int
digests:
  description: The C(digest) of each side.
  returned: always
  type: dict
left:
  description: What the left side was.
  returned: always
  type: str
right:
  description: What the right side was.
  returned: always
  type: str
"""

import time

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule, connection_argument_spec
from ansible_collections.ceptra.backfill.plugins.module_utils._snapshot import (
    diff_snapshots,
    fetch_snapshot,
    load_snapshot_file,
    settled_view,
    summarize_diff,
)

# The second cluster's connection: the shared options, given inline (no environment, no routes).
OTHER_OPTIONS = {name: {key: value for key, value in spec.items() if key != "fallback"}
                 for name, spec in connection_argument_spec().items() if name != "routes"}


def _side(module, clients, src, part_id, remote, label_url):
    """Load one side: a saved file, or a live partition from ``remote`` ("main" or "other")."""
    if src:
        label = "file %s" % src + (" partition %s" % part_id if part_id is not None else "")
        return load_snapshot_file(src, part_id), label
    if part_id is None:
        module.fail_json(msg="part_id is required to read a live snapshot (or give left_src/right_src files)")
    if remote == "main":
        client = module.client
    else:
        if "other" not in clients:
            clients["other"] = CeptraClient.from_options(module.params["other"])
        client = clients["other"]
    return fetch_snapshot(client, part_id), "partition %s of %s" % (part_id, label_url)


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "part_id": {"type": "str"},
        "other_part_id": {"type": "str"},
        "left_src": {"type": "path"},
        "right_src": {"type": "path"},
        "other": {"type": "dict", "options": OTHER_OPTIONS},
        "sections": {"type": "list", "elements": "str", "default": ["metrics", "late"]},
        "tolerance": {"type": "float", "default": 0},
        "max_differences": {"type": "int", "default": 100},
        "fail_on_difference": {"type": "bool", "default": False},
        "settled_before_ns": {"type": "int"},
        "settle_ms": {"type": "int"},
    }, mutually_exclusive=[["other", "right_src"], ["settled_before_ns", "settle_ms"]])
    params = module.params
    module.no_log_credentials((params["other"] or {}).get("url"))
    cutoff = params["settled_before_ns"]
    if params["settle_ms"] is not None:
        cutoff = time.time_ns() - params["settle_ms"] * 1_000_000
    right_part_id = params["other_part_id"] if params["other_part_id"] is not None else params["part_id"]
    if (not params["left_src"] and not params["right_src"] and not params["other"]
            and right_part_id == params["part_id"]):
        module.fail_json(msg="nothing to compare: partition %s against itself. Set other_part_id, other (a second "
                             "cluster), left_src or right_src (a saved snapshot file)" % params["part_id"])
    others = {}
    try:
        with module.reporting("read the snapshots to compare"):
            left, left_label = _side(module, others, params["left_src"], params["part_id"], "main", params["url"])
            remote = "other" if params["other"] else "main"
            right_url = params["other"]["url"] if params["other"] else params["url"]
            right, right_label = _side(module, others, params["right_src"], right_part_id, remote, right_url)
            left, right = settled_view(left, cutoff), settled_view(right, cutoff)
            diff = diff_snapshots(left, right, sections=params["sections"], tolerance=params["tolerance"],
                                  max_entries=params["max_differences"])
    finally:
        for client in others.values():
            client.close()
    result = dict(diff, changed=False, settled_before_ns=cutoff, left=left_label, right=right_label,
                  msg=summarize_diff(diff, left_label, right_label))
    if params["fail_on_difference"] and not diff["equal"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
