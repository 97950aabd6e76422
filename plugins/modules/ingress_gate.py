#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open or close the ingress gate of CEPtra partitions."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ingress_gate
short_description: Open or close the ingress gate of CEPtra partitions
version_added: 0.1.0
description:
  - Sets C(partitions.<p>.ingress_gate) in C(/v1/config) (read-modify-write under C(If-Match)).
    While a gate is V(warmup) live appends are answered C(TRANSIENT_WARMUP) and REPLAY
    appends land; a wiped partition starts with it forced to V(warmup).
  - V(warmup) holds the partitions in warmup. V(open) opens the partitions whose readiness
    allows it (no readiness reason other than C(warmup) - apply and replication lag within the
    readiness thresholds, no durability fence), unless O(hold_file) exists. With
    O(wait_timeout) it keeps opening them as they clear and fails, naming the gate, the
    partitions still closed and why, when some are still closed after that many seconds.
  - Opening is a plain config change, not an override, so restoring a run's overrides does not
    close the gate again. Each change writes an audit record of kind C(ingress_gate).
options:
  partitions:
    description: The partitions whose gate to set.
    type: list
    elements: str
    required: true
  state:
    description: V(open) or V(warmup) (closed).
    type: str
    choices: [open, warmup]
    default: open
  when_ready:
    description: With O(state=open), open only partitions whose readiness allows it.
    type: bool
    default: true
  hold_file:
    description: With O(state=open), open nothing while this file exists (the operator's hold point).
    type: path
  create_hold:
    description:
      - With O(hold_file), create it first when a gate is still closed (the hold point's
        arrival; the operator removes the file to let the gates open). Not in check mode.
    type: bool
    default: false
  wait_timeout:
    description: With O(state=open), seconds to wait for every partition to open (0 - open what may open now and return).
    type: float
    default: 0
  poll_interval:
    description: Seconds between readiness looks while waiting.
    type: float
    default: 1.0
  run_id:
    description: The run the change belongs to (in the audit record).
    type: str
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reports which gates would change; sends no PATCH and does not wait.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: "Gate: ingress open on the recovered partitions"
  ceptra.backfill.ingress_gate:
    partitions: ["1", "3"]
    state: open
    wait_timeout: 600
    hold_file: /var/run/ceptra/hold-open_ingress
"""

RETURN = r"""
opened:
  description: Partitions opened by this call, with the time (epoch seconds) each was opened.
  returned: success
  type: list
  elements: dict
  sample: [{"part_id": "1", "at": 1732600000.5}]
open:
  description: Partitions of O(partitions) whose gate is open now.
  returned: success
  type: list
  elements: str
closed:
  description: Partitions of O(partitions) still in warmup.
  returned: success
  type: list
  elements: str
blocked:
  description: Per closed partition, the readiness reasons that keep it closed.
  returned: success
  type: dict
  sample: {"3": ["apply_lag"]}
held:
  description: True when the hold file kept closed partitions from opening.
  returned: success
  type: bool
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._ingress_gate import GateKeeper
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule

ARGUMENT_SPEC = {
    "partitions": {"type": "list", "elements": "str", "required": True},
    "state": {"type": "str", "choices": ["open", "warmup"], "default": "open"},
    "when_ready": {"type": "bool", "default": True},
    "hold_file": {"type": "path"},
    "create_hold": {"type": "bool", "default": False},
    "wait_timeout": {"type": "float", "default": 0.0},
    "poll_interval": {"type": "float", "default": 1.0},
    "run_id": {"type": "str"},
}


def main():
    """Run the module."""
    module = CeptraModule(argument_spec=ARGUMENT_SPEC)
    params = module.params
    with module.reporting("set the ingress gate of partition(s) %s" % ", ".join(params["partitions"])):
        gates = GateKeeper(module.client, check_mode=module.check_mode, run_id=params["run_id"])
        if params["state"] == "warmup":
            result = gates.close(params["partitions"])
        else:
            result = gates.open(params["partitions"], hold_file=params["hold_file"], when_ready=params["when_ready"],
                                timeout=params["wait_timeout"], interval=params["poll_interval"],
                                create_hold=params["create_hold"])
    for warning in gates.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
