#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the cluster's definition bundles and wait for a bundle's shadow warmup."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_info
short_description: List CEPtra definition bundles and wait for shadow warmup
version_added: 0.1.0
description:
  - Reads C(GET /v1/definitions) (the active bundle and every uploaded bundle with its
    per-partition shadow state).
  - With O(bundle_id), reports that bundle's shadow per partition and sorts the partitions
    into ready, pending (still warming up), needing a WAL replay (an aggregator with
    C(upgrade) set to C(false); run M(ceptra.backfill.wal_replay)) and failed (C(SHADOW_FAILED) or
    C(SHADOW_TIMEOUT); exclude them at activation or abort it).
  - With O(wait=true), polls until the shadow warmup is settled (or ready, see O(wait_for)).
    On timeout the task fails naming the partitions still warming up and their states.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
options:
  bundle_id:
    description:
      - The bundle to report on (and wait for), as returned by M(ceptra.backfill.bundle).
      - Required when O(wait=true).
    type: str
  part_ids:
    description:
      - Limit the report and the wait to these partitions (default all).
      - A partition the bundle lists no shadow for fails the task on the first read, naming the
        partitions it lists.
    type: list
    elements: str
  wait:
    description:
      - Wait for the shadow warmup of O(bundle_id).
    type: bool
    default: false
  wait_for:
    description:
      - V(settled) waits until no partition is still warming up on its own, that is each one is
        ready, needs a WAL replay, or failed; the result says which.
      - V(ready) waits until every partition is ready, and fails at once when a partition needs
        a WAL replay or failed (it cannot become ready on its own).
    type: str
    choices: [settled, ready]
    default: settled
  wait_timeout:
    description: Seconds to wait before failing.
    type: int
    default: 300
  wait_interval:
    description: Seconds between two polls.
    type: float
    default: 2
seealso:
  - module: ceptra.backfill.bundle
  - module: ceptra.backfill.wal_replay
  - module: ceptra.backfill.activation
"""

EXAMPLES = r"""
- name: List the bundles
  ceptra.backfill.bundle_info:
  register: definitions

- name: Wait until the new bundle's shadows have settled
  ceptra.backfill.bundle_info:
    bundle_id: "{{ uploaded.bundle_id }}"
    wait: true
    wait_timeout: 600
  register: shadow

- name: Replay the WAL where the bundle needs it
  ceptra.backfill.wal_replay:
    needs_replay_only: true
    bundle_id: "{{ uploaded.bundle_id }}"
  when: shadow.needs_replay | length > 0
"""

RETURN = r"""
active:
  description: The active bundle (C(bundle_id), C(def_version), C(policy_version)), or null.
  returned: always
  type: dict
bundles:
  description: Every uploaded bundle as C(GET /v1/definitions) lists it.
  returned: always
  type: list
  elements: dict
shadow:
  description: Per-partition shadow state of O(bundle_id)
    (C(shadow_apply_state), C(cep_shadow_state), C(needs_replay), C(warmup_ready_ratio), C(status)).
  returned: when O(bundle_id) is set
  type: dict
  sample: {"0": {"cep_shadow_state": "SHADOW_READY", "shadow_apply_state": "Ready", "needs_replay": false,
           "warmup_ready_ratio": 1.0, "status": "ready"}}
ready_partitions:
  description: Partitions whose shadow is ready.
  returned: when O(bundle_id) is set
  type: list
  elements: str
pending_partitions:
  description: Partitions still warming up on their own.
  returned: when O(bundle_id) is set
  type: list
  elements: str
needs_replay:
  description: Partitions that need a WAL replay from the latest full checkpoint before they can become ready.
  returned: when O(bundle_id) is set
  type: list
  elements: str
failed_partitions:
  description: Partitions whose shadow is C(SHADOW_FAILED) or C(SHADOW_TIMEOUT).
  returned: when O(bundle_id) is set
  type: list
  elements: str
all_ready:
  description: True when every (selected) partition's shadow is ready.
  returned: when O(bundle_id) is set
  type: bool
is_active:
  description: True when O(bundle_id) is the active bundle.
  returned: when O(bundle_id) is set
  type: bool
polls:
  description: How many times the definitions were read while waiting.
  returned: when O(wait=true)
  type: int
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import (
    ControlPlaneError,
    active_bundle_id,
    find_bundle,
    get_definitions,
    shadow_summary,
    unknown_shadow_error,
    wait_for_shadow,
)
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def _bundle_result(summary):
    return {
        "shadow": summary["partitions"],
        "ready_partitions": summary["ready_partitions"],
        "pending_partitions": summary["pending_partitions"],
        "needs_replay": summary["needs_replay"],
        "failed_partitions": summary["failed_partitions"],
        "all_ready": summary["all_ready"],
    }


def _wait(client, params):
    """Wait for the bundle's shadows; a failed wait reports the shadows as the module's result keys."""
    try:
        return wait_for_shadow(client, params["bundle_id"], params["part_ids"], wait_for=params["wait_for"],
                               timeout=params["wait_timeout"], interval=params["wait_interval"])
    except ControlPlaneError as err:
        shadow = err.details.pop("shadow", None)
        if shadow:
            err.details.update(_bundle_result(shadow))
        raise


def _one_bundle(definitions, params):
    """The shadow summary of the requested bundle (ControlPlaneError when it or a partition is unknown)."""
    entry = find_bundle(definitions, params["bundle_id"])
    if entry is None:
        known = ", ".join(e.get("bundle_id") or "?" for e in definitions["bundles"]) or "none"
        raise ControlPlaneError("bundle %s is not on the cluster (uploaded bundles: %s)" % (params["bundle_id"], known),
                                active=definitions["active"], bundles=definitions["bundles"])
    summary = shadow_summary(entry, params["part_ids"])
    if summary["unknown_partitions"]:
        raise unknown_shadow_error(summary, active=definitions["active"], bundles=definitions["bundles"])
    return summary


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "bundle_id": {"type": "str"},
        "part_ids": {"type": "list", "elements": "str"},
        "wait": {"type": "bool", "default": False},
        "wait_for": {"type": "str", "choices": ["settled", "ready"], "default": "settled"},
        "wait_timeout": {"type": "int", "default": 300},
        "wait_interval": {"type": "float", "default": 2},
    }, required_if=[["wait", True, ["bundle_id"]]])
    params = module.params
    result = {"changed": False}
    with module.reporting("read the definition bundles"):
        summary = _wait(module.client, params) if params["wait"] else None
        if summary is not None:
            result["polls"] = summary["polls"]
        definitions = get_definitions(module.client)
        result.update(active=definitions["active"], bundles=definitions["bundles"])
        if summary is None and params["bundle_id"]:
            summary = _one_bundle(definitions, params)
    if summary is not None:
        # After a wait: the state the wait ended on, not the later read.
        result.update(_bundle_result(summary))
        result["is_active"] = params["bundle_id"] == active_bundle_id(definitions)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
