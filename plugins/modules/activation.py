#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Activate a CEPtra definition bundle through the activation barrier."""

from __future__ import annotations

DOCUMENTATION = r"""
module: activation
short_description: Activate a CEPtra definition bundle (activation barrier)
version_added: 0.1.0
description:
  - Asks the control plane to activate an uploaded bundle (C(POST /v1/activate)). The cluster
    appends a C(DEFINE_ACTIVATE) barrier on every targeted partition once their shadows are
    ready; entries after the barrier apply with the new C(def_version).
  - Idempotent. A bundle that is already active is left alone (C(changed=false)); when a
    barrier for the bundle is already pending the module returns it, or waits on it.
  - Never forces past partitions stuck in shadow failure (C(SHADOW_FAILED), C(SHADOW_TIMEOUT)).
    When such partitions are targeted the task fails naming them and the two ways out,
    exclude them explicitly with O(exclude_partitions), or abort with O(abort=true).
  - When O(wait=true) and targeted partitions need a WAL replay first, the task fails naming
    them (run M(ceptra.backfill.wal_replay)) instead of waiting for a barrier that cannot commit.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be activated, the targeted partitions and which partitions block; changes nothing.
  diff_mode:
    support: full
    details: Shows the active bundle id before and after (or the barrier state for an abort).
options:
  bundle_id:
    description: The bundle to activate (or whose pending activation to abort).
    type: str
    required: true
  readiness_threshold:
    description:
      - Share of targeted partitions whose shadow must be ready for the barrier to commit (0 < x <= 1).
    type: float
    default: 1.0
  exclude_partitions:
    description:
      - Partitions the barrier leaves out (for example ones stuck in shadow failure).
        They keep the old definitions until they are repaired.
    type: list
    elements: str
    default: []
  abort:
    description:
      - Abort the pending activation of O(bundle_id) instead of activating it.
        Nothing to abort gives C(changed=false).
    type: bool
    default: false
  wait:
    description: Wait until the barrier commits (fail when it is aborted or expires).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the commit.
    type: int
    default: 300
  wait_interval:
    description: Seconds between two polls of the barrier.
    type: float
    default: 2
seealso:
  - module: ceptra.backfill.bundle_info
  - module: ceptra.backfill.wal_replay
"""

EXAMPLES = r"""
- name: Activate the new bundle and wait for the barrier to commit
  ceptra.backfill.activation:
    bundle_id: "{{ uploaded.bundle_id }}"

- name: Activate while leaving out a partition stuck in SHADOW_FAILED
  ceptra.backfill.activation:
    bundle_id: "{{ uploaded.bundle_id }}"
    exclude_partitions: ["1"]

- name: Give up on the activation
  ceptra.backfill.activation:
    bundle_id: "{{ uploaded.bundle_id }}"
    abort: true
"""

RETURN = r"""
bundle_id:
  description: The bundle asked for.
  returned: always
  type: str
active_bundle_id:
  description: The active bundle after the run (before it in check mode).
  returned: always
  type: str
barrier:
  description: The barrier document (C(barrier_id), C(state), C(missing_partitions), C(barrier_index)).
  returned: when a barrier exists
  type: dict
targeted_partitions:
  description: Partitions the barrier targets (all minus O(exclude_partitions)).
  returned: unless the bundle was already active or O(abort=true)
  type: list
  elements: str
blocking_partitions:
  description: Targeted partitions whose shadow is not ready yet (before the barrier was requested).
  returned: unless the bundle was already active or O(abort=true)
  type: list
  elements: str
failed_partitions:
  description: Targeted partitions stuck in shadow failure.
  returned: unless the bundle was already active or O(abort=true)
  type: list
  elements: str
needs_replay:
  description: Targeted partitions that need a WAL replay first.
  returned: unless the bundle was already active or O(abort=true)
  type: list
  elements: str
shadow:
  description: Per-partition shadow state of the bundle.
  returned: unless the bundle was already active or O(abort=true)
  type: dict
would_activate:
  description: In check mode, true when a real run would request (or wait for) the activation.
  returned: in check mode
  type: bool
would_abort:
  description: In check mode with O(abort=true), true when there is a pending barrier to abort.
  returned: in check mode
  type: bool
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._activation import activate
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "bundle_id": {"type": "str", "required": True},
        "readiness_threshold": {"type": "float", "default": 1.0},
        "exclude_partitions": {"type": "list", "elements": "str", "default": []},
        "abort": {"type": "bool", "default": False},
        "wait": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 300},
        "wait_interval": {"type": "float", "default": 2},
    })
    params = module.params
    if not 0 < params["readiness_threshold"] <= 1:
        module.fail_json(msg="readiness_threshold must be above 0 and at most 1, got %s" % params["readiness_threshold"])
    with module.reporting("activate bundle %s" % params["bundle_id"]):
        result = activate(module.client, params["bundle_id"], readiness_threshold=params["readiness_threshold"],
                          exclude_partitions=params["exclude_partitions"], abort=params["abort"], wait=params["wait"],
                          timeout=params["wait_timeout"], interval=params["wait_interval"],
                          check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
