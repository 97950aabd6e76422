#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stage or revert a named CEPtra config override with a validity window."""

from __future__ import annotations

DOCUMENTATION = r"""
module: config_override
short_description: Stage or revert a named CEPtra config override with a validity window
version_added: 0.1.0
description:
  - With O(state=present), stages a named override set (a partial config such as wider
    lateness and correction horizons for a backfill) with an explicit validity window, in one
    read-modify-write C(PATCH /v1/config) under C(If-Match). The same PATCH writes a ledger
    entry into the config's C(annotations) (who, when, expiry, the value of every key before
    and after, config versions), so any host can see, revert or expire it.
  - Before anything is sent the override is validated against the bounds of every config knob
    (the table the cluster enforces, documented in C(docs/ceptra-api.openapi.yaml) and
    C(docs/config-manager.md); for example C(correction_horizon_ms) at most 315360000000, 10 years)
    and, when it touches C(lane_domains), against the lane budget (C(LANE_MAX_PER_PARTITION=64)).
    A refused override sends no PATCH; RV(violations) names every key and its allowed range.
  - A concurrent change (HTTP 412) is retried only when none of the keys this override touches
    changed underneath; otherwise the task fails naming those keys.
  - With O(state=absent), reverts the override; every key it changed goes back to its value
    from before (a key that was absent is deleted). A key someone else changed since is left
    alone and reported in RV(conflicts); the other keys are restored and the ledger entry is
    removed.
  - Expired overrides are reverted by M(ceptra.backfill.config_override_sweep); see
    C(docs/config-manager.md) for the ledger format and scheduling.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reads the config, validates and computes the exact change, sends no PATCH and no audit record.
  diff_mode:
    support: full
    details: Shows the config (without the override ledger) and this override's ledger entry before and after.
options:
  name:
    description:
      - Name of the override set (its key in the ledger), for example V(backfill-INC-1234).
      - "1 to 128 letters, digits and C(_ . : @ / -)."
    type: str
    required: true
  state:
    description:
      - V(present) stages or updates the override; V(absent) reverts it.
    type: str
    choices: [present, absent]
    default: present
  settings:
    description:
      - 'The partial config to apply, in the layout of C(GET /v1/config), for example
        C({"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}}).'
      - Every leaf is one overridden key; a leaf V(null) removes the key while the override is active.
      - The same O(name) with different settings updates the override; keys it already held keep
        their original before-values, keys it no longer names are restored.
      - Required with O(state=present). C(annotations) cannot be overridden.
    type: dict
  valid_for:
    description:
      - How long the override stays valid, counted from when it was first staged, as a number and a
        unit C(s), C(m), C(h), C(d) or C(w), for example V(90s), V(2h), V(1d), V(1h30m).
      - A rerun keeps the expiry; a different O(valid_for) moves it (still counted from staging);
        O(extend=true) restarts it from now.
      - At most V(3650d) (10 years); an override is temporary, extend it when needed.
      - Exactly one of O(valid_for) and O(expires_at) is required with O(state=present).
    type: str
  expires_at:
    description:
      - When the override expires, as ISO 8601 with a time zone (V(2026-11-27T06:00:00Z)) or epoch seconds.
      - At most 3650 days (10 years) from now; a time outside 1970 to 9999 fails the task.
    type: raw
  extend:
    description:
      - With O(valid_for), restart the validity window from now even when the override already exists.
    type: bool
    default: false
  reason:
    description:
      - Why the override exists (incident or change id); kept in the ledger and the audit record.
    type: str
  actor:
    description:
      - Who stages the override, recorded as C(who) in the ledger.
      - Defaults to E(CEPTRA_ACTOR) (or E(CEPTRA_OPERATOR)), else C(<user>@<host>) of the host that runs the module. The
        cluster's own audit record carries the authenticated identity in any case.
    type: str
  audit:
    description:
      - Also write an audit record of kind C(override) with C(POST /v1/audit) for every change.
    type: bool
    default: true
  bundle_src:
    description:
      - Path of the active definition bundle, used to project lanes per metric when O(settings)
        touches C(lane_domains).
      - Without it the module uses the active bundle's queries from C(GET /v1/definitions) when the
        cluster lists them, else checks each lane domain alone and warns; the cluster's own 422
        stays the second line of defence.
    type: path
  bundle_content:
    description:
      - The active bundle as YAML or JSON text or a mapping; alternative to O(bundle_src).
    type: raw
requirements:
  - PyYAML on the host that runs the module, for YAML bundles in O(bundle_src) or O(bundle_content)
notes:
  - Changing the config needs the C(operator) role; an observer identity fails with a permission error.
  - The contract has no server-side expiry, so schedule M(ceptra.backfill.config_override_sweep).
seealso:
  - module: ceptra.backfill.config_override_sweep
  - module: ceptra.backfill.config_info
"""

EXAMPLES = r"""
- name: Widen lateness for one metric and raise dedup capacity for two hours
  ceptra.backfill.config_override:
    url: https://ceptra.example:8443
    client_cert: /etc/ceptra/operator.pem
    client_key: /etc/ceptra/operator-key.pem
    name: backfill-INC-1234
    settings:
      metrics:
        anti_cheat_flags:
          lateness_allowance_ms: 600000
          correction_horizon_ms: 86400000
      dedup_capacity_per_partition: 2000000
    valid_for: 2h
    reason: INC-1234 partial recovery

- name: Raise a lane domain, checked against the active bundle's queries
  ceptra.backfill.config_override:
    name: wider-player-lanes
    settings:
      lane_domains:
        player_id:
          max_per_partition: 48
    expires_at: "2026-11-27T06:00:00Z"
    bundle_src: /srv/bundles/gaming_cheat_detection.yaml

- name: Revert the override when the backfill is done
  ceptra.backfill.config_override:
    name: backfill-INC-1234
    state: absent
"""

RETURN = r"""
action:
  description:
    - What happened, V(created), V(updated), V(extended), V(restaged) (an expired override staged
      anew), V(unchanged), V(reverted) or V(absent) (nothing to revert).
  returned: always
  type: str
  sample: created
config_version:
  description: The config version after the task (unchanged when nothing was written).
  returned: always
  type: int
  sample: 8
previous_version:
  description: The config version the change was computed against.
  returned: always
  type: int
changed_keys:
  description: Dotted config keys the change touched (from the PATCH response when one was sent).
  returned: always
  type: list
  elements: str
override:
  description:
    - The ledger entry (C(name), C(who), C(created_at), C(expires_at), C(valid_for), C(reason),
      C(settings), C(before), C(after), C(created_containers), C(config_version_before),
      C(config_version_after), C(updated_at), C(updated_by)). For O(state=absent) the removed entry.
  returned: always
  type: dict
expires_at:
  description: When the override expires (ISO 8601 UTC).
  returned: when O(state=present)
  type: str
  sample: "2026-11-26T21:00:00.000Z"
remaining_s:
  description: Seconds of validity left.
  returned: when O(state=present)
  type: float
restored_keys:
  description: Keys given back to their before-values (revert, or keys an update no longer names).
  returned: always
  type: list
  elements: str
conflicts:
  description:
    - Keys left alone because someone changed them since the override set them, each with
      C(key), C(expected) (the override's value), C(current) and C(before).
  returned: always
  type: list
  elements: dict
handed_over:
  description: Keys still held by a later override stacked on them (key -> that override), which inherits the original value.
  returned: always
  type: dict
lane_projections:
  description: Projected lanes per metric with the resulting lane domains.
  returned: when O(settings) touches C(lane_domains)
  type: list
  elements: dict
violations:
  description: Why an override was refused before sending anything (each with C(path) and C(message)).
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._config_ledger import Window
from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import ConfigManager
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "settings": {"type": "dict"},
            "valid_for": {"type": "str"},
            "expires_at": {"type": "raw"},
            "extend": {"type": "bool", "default": False},
            "reason": {"type": "str"},
            "actor": {"type": "str"},
            "audit": {"type": "bool", "default": True},
            "bundle_src": {"type": "path"},
            "bundle_content": {"type": "raw"},
        },
        mutually_exclusive=[["valid_for", "expires_at"], ["bundle_src", "bundle_content"]],
        required_if=[["state", "present", ["settings"]], ["state", "present", ["valid_for", "expires_at"], True]],
    )
    params = module.params
    manager = ConfigManager(module.client, actor=params["actor"], check_mode=module.check_mode, audit=params["audit"])
    doing = "%s override %s" % ("stage" if params["state"] == "present" else "revert", params["name"])
    with module.reporting(doing, warnings=manager.warnings):
        if params["state"] == "present":
            window = Window(valid_for=params["valid_for"], expires_at=params["expires_at"], extend=params["extend"])
            result = manager.stage(params["name"], params["settings"], window, reason=params["reason"],
                                   bundle_src=params["bundle_src"], bundle_content=params["bundle_content"])
        else:
            result = manager.revert(params["name"])
    for warning in result.pop("warnings"):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
