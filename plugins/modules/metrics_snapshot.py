#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Export partitions' metrics snapshots (test mode) and optionally save them to a file."""

from __future__ import annotations

DOCUMENTATION = r"""
module: metrics_snapshot
short_description: Export CEPtra metrics snapshots (TEST/ExportMetricsSnapshot)
version_added: 0.1.0
description:
  - Reads the deterministic aggregate-state dump of partitions
    (C(GET /v1/test/metrics-snapshot?part_id=...)), per metric, tier, lane and pane, plus a digest.
    Two partitions that accepted the same set of events export the same snapshot.
  - The call exists only when the cluster runs in test mode; otherwise the task fails saying so.
  - With O(dest), saves the snapshots as stable JSON (sorted keys) to a file on the host that
    runs the module, for M(ceptra.backfill.snapshot_diff). The file is only rewritten (and the
    task only C(changed)) when its content changes.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reads the snapshots and reports whether O(dest) would change, without writing it.
  diff_mode:
    support: full
    details: Shows the per-partition digests the file held before and holds after.
options:
  part_ids:
    description: Partitions to export (default every partition listed by C(/v1/state)).
    type: list
    elements: str
  dest:
    description:
      - File to save the snapshots to (JSON). Its directory must exist.
    type: path
  window_start_ns:
    description:
      - With O(window_end_ns), also count per partition, metric and tier the panes that start inside
        the window (RV(window_panes)), the evidence that a replayed window holds state.
    type: int
  window_end_ns:
    description: End of the window (exclusive), with O(window_start_ns).
    type: int
  return_snapshots:
    description: Return the full snapshots in the result (they can be large); digests are always returned.
    type: bool
    default: true
notes:
  - Needs the C(observer) role and a cluster in test mode (C(ceptra-lab serve --test-mode)).
seealso:
  - module: ceptra.backfill.snapshot_diff
"""

EXAMPLES = r"""
- name: Save every partition's snapshot before the backfill
  ceptra.backfill.metrics_snapshot:
    dest: /var/lib/ceptra-backfill/before.json
    return_snapshots: false

- name: Read the snapshots of partitions 0 and 1
  ceptra.backfill.metrics_snapshot:
    part_ids: ["0", "1"]
  register: snap
"""

RETURN = r"""
digests:
  description: Per partition, the snapshot's digest.
  returned: always
  type: dict
  sample: {"0": "sha256:9c1e...", "1": "sha256:9c1e..."}
window_panes:
  description: "Per partition, C({metric: {tier: panes}}) for the panes starting inside the window."
  returned: when O(window_start_ns) is set
  type: dict
  sample: {"1": {"__events__": {"raw": 12}}}
applied_index:
  description: Per partition, the applied index the snapshot was taken at.
  returned: always
  type: dict
snapshots:
  description: Per partition, the snapshot (C(part_id), C(applied_index), C(metrics), C(late), C(digest)).
  returned: when O(return_snapshots=true)
  type: dict
dest:
  description: The file written (or that would be written in check mode).
  returned: when O(dest) is set
  type: str
"""

import os
import tempfile

from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._snapshot import (
    SnapshotError,
    digests_of_text,
    fetch_snapshots,
    read_text_or_none,
    render_snapshot_file,
    window_panes,
)


def _write_atomically(module, dest, text):
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        module.fail_json(msg="cannot save the snapshots to %s: directory %s does not exist" % (dest, directory))
    handle, tmp_path = tempfile.mkstemp(prefix=".ceptra-snapshot-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp:
            tmp.write(text)
    except OSError as exc:
        os.unlink(tmp_path)
        module.fail_json(msg="cannot save the snapshots to %s: %s" % (dest, exc))
    module.atomic_move(tmp_path, dest)


def _save(module, dest, snapshots, result):
    """Write the snapshot file when its content changes; adds ``dest``, ``changed`` and ``diff``."""
    text = render_snapshot_file(snapshots)
    try:
        before = read_text_or_none(dest)
    except SnapshotError as err:
        module.fail_from(err, "read %s" % dest)
    result["dest"] = dest
    if before != text:
        result["changed"] = True
        result["diff"] = {"before_header": dest, "after_header": dest,
                          "before": {"digests": digests_of_text(before)},
                          "after": {"digests": digests_of_text(text)}}
        if not module.check_mode:
            _write_atomically(module, dest, text)


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "part_ids": {"type": "list", "elements": "str"},
        "dest": {"type": "path"},
        "return_snapshots": {"type": "bool", "default": True},
        "window_start_ns": {"type": "int"},
        "window_end_ns": {"type": "int"},
    }, required_together=[["window_start_ns", "window_end_ns"]])
    params = module.params
    with module.reporting("export the metrics snapshots"):
        snapshots = fetch_snapshots(module.client, params["part_ids"])
    result = {
        "changed": False,
        "digests": {part_id: snap.get("digest") for part_id, snap in snapshots.items()},
        "applied_index": {part_id: snap.get("applied_index") for part_id, snap in snapshots.items()},
    }
    if params["window_start_ns"] is not None:
        result["window_panes"] = {part_id: window_panes(snap, params["window_start_ns"], params["window_end_ns"])
                                  for part_id, snap in snapshots.items()}
    if params["return_snapshots"]:
        result["snapshots"] = snapshots
    if params["dest"]:
        _save(module, params["dest"], snapshots, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
