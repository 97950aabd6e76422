#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: missing_window_info
short_description: Find the partitions and the event-time window an outage left missing
version_added: 0.1.0
description:
  - The assessment step of a partial recovery (scenario 2 of the backfill operations guide).
    Reads the outage spans every partition reports in C(GET /v1/state) (C(unavailable_windows),
    the spans during which it refused appends) and the C(outage) records of the control-plane
    audit log, and returns the affected partitions and the window to replay.
  - Without O(window_start_ns) and O(window_end_ns) the window is the union of the spans, widened
    by O(margin_ms) on both sides (events stamped just before a fence began may have reached the
    cluster after it; replaying one that did land is answered as a duplicate, not applied again).
    With them the operator names the window, and the partitions are O(partitions) or every
    partition with a span inside it.
  - RV(in_progress) lists partitions whose outage has not ended yet; replaying then would race
    the outage, so a scenario gates on it being empty.
options:
  partitions:
    description: Only these partitions (default every partition with an outage span).
    type: list
    elements: str
  window_start_ns:
    description: Start of the missing window (event time, ns since the epoch, inclusive), given by the operator.
    type: int
  window_end_ns:
    description: End of the missing window (exclusive). Give both bounds or neither.
    type: int
  since_ns:
    description: Ignore outage spans that ended before this time (an earlier incident, already recovered).
    type: int
  margin_ms:
    description: Widen a window found from the outage spans by this much on both sides.
    type: int
    default: 1000
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
notes:
  - Needs the C(observer) role.
seealso:
  - module: ceptra.backfill.cluster_state_info
  - module: ceptra.backfill.history_info
"""

EXAMPLES = r"""
- name: Find the missing window from the cluster's outage spans
  ceptra.backfill.missing_window_info:
  register: missing

- name: The operator names the window
  ceptra.backfill.missing_window_info:
    partitions: ["1", "3"]
    window_start_ns: 1732600000000000000
    window_end_ns: 1732603600000000000
"""

RETURN = r"""
found:
  description: True when there is a window to recover.
  returned: success
  type: bool
partitions:
  description: The affected partitions, in partition order.
  returned: success
  type: list
  elements: str
window_start_ns:
  description: Start of the window to replay (inclusive); null when nothing was found.
  returned: success
  type: int
window_end_ns:
  description: End of the window to replay (exclusive); null when nothing was found.
  returned: success
  type: int
windows:
  description: Per affected partition, its outage spans C({start_ts_ns, end_ts_ns}).
  returned: success
  type: dict
in_progress:
  description: Affected partitions whose outage has not ended yet.
  returned: success
  type: list
  elements: str
source:
  description: Where the window comes from - V(unavailable_windows), V(operator) or V(none).
  returned: success
  type: str
audit_outages:
  description: The C(outage) records of the control-plane audit log (id, ts, actor, details).
  returned: success
  type: list
  elements: dict
now_ns:
  description: The time the window was computed at (ns since the epoch).
  returned: success
  type: int
"""

import time

from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._recovery import RecoveryPlanError, missing_window


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "partitions": {"type": "list", "elements": "str"},
        "window_start_ns": {"type": "int"},
        "window_end_ns": {"type": "int"},
        "since_ns": {"type": "int"},
        "margin_ms": {"type": "int", "default": 1000},
    })
    params = module.params
    with module.reporting("read the outage spans"):
        state = module.client.get_json("state") or {}
        audit = module.client.get_json("audit", query={"kind": "outage"}) or {}
    now_ns = time.time_ns()
    try:
        plan = missing_window(state.get("partitions") if isinstance(state, dict) else None, now_ns,
                              wanted=params["partitions"], start_ns=params["window_start_ns"],
                              end_ns=params["window_end_ns"], since_ns=params["since_ns"],
                              margin_ms=params["margin_ms"])
    except RecoveryPlanError as exc:
        module.fail_json(msg="Could not find the missing window: %s" % exc)
    records = audit.get("records") if isinstance(audit, dict) else None
    outages = [r for r in records or () if isinstance(r, dict) and r.get("kind", "outage") == "outage"]
    module.exit_json(changed=False, now_ns=now_ns, audit_outages=outages, **plan)


if __name__ == "__main__":
    main()
