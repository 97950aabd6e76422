#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revert every expired CEPtra config override (the automatic rollback)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: config_override_sweep
short_description: Revert every expired CEPtra config override
version_added: 0.1.0
description:
  - Reads the override ledger kept by M(ceptra.backfill.config_override) in the config's
    C(annotations) and reverts every override whose C(expires_at) has passed, each in its own
    C(If-Match) read-modify-write, exactly like O(ceptra.backfill.config_override#module:state=absent).
  - Keys someone changed since an override set them are left alone and reported in RV(conflicts).
  - Safe to run from cron or an AWX schedule; with nothing expired it changes nothing, and
    several hosts running it at once cannot revert an override twice (C(If-Match)).
  - The task fails (after trying every expired override) when an override could not be reverted,
    naming it in RV(failed).
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Reports which overrides would be reverted without sending anything.
  diff_mode:
    support: none
options:
  actor:
    description:
      - Who runs the sweep, recorded in the audit records. Defaults to E(CEPTRA_ACTOR) (or E(CEPTRA_OPERATOR)), else C(<user>@<host>).
    type: str
  audit:
    description:
      - Write an audit record of kind C(override) (action V(expired)) for every revert.
    type: bool
    default: true
notes:
  - Needs the C(operator) role.
seealso:
  - module: ceptra.backfill.config_override
  - module: ceptra.backfill.config_info
"""

EXAMPLES = r"""
- name: Roll back expired overrides (run every minute from an AWX schedule or cron)
  ceptra.backfill.config_override_sweep:
    url: https://ceptra.example:8443
    client_cert: /etc/ceptra/operator.pem
    client_key: /etc/ceptra/operator-key.pem
  register: sweep

- name: Show what was rolled back
  ansible.builtin.debug:
    msg: "reverted {{ sweep.reverted }}, conflicts {{ sweep.conflicts }}, still active {{ sweep.remaining | map(attribute='name') }}"
"""

RETURN = r"""
reverted:
  description: Names of the overrides reverted (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
conflicts:
  description: Override name -> keys left alone because someone changed them since (C(key), C(expected), C(current), C(before)).
  returned: always
  type: dict
failed:
  description: Override name -> why it could not be reverted (it stays in the ledger for the next sweep).
  returned: always
  type: dict
remaining:
  description: Overrides still valid, each with C(name), C(who), C(expires_at), C(remaining_s), C(keys).
  returned: always
  type: list
  elements: dict
config_versions:
  description: Config versions created by the reverts, in order.
  returned: always
  type: list
  elements: int
now:
  description: The time the sweep compared expiries with (ISO 8601 UTC).
  returned: always
  type: str
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import ConfigManager
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={"actor": {"type": "str"}, "audit": {"type": "bool", "default": True}})
    with module.reporting("sweep expired overrides"):
        manager = ConfigManager(module.client, actor=module.params["actor"], check_mode=module.check_mode,
                                audit=module.params["audit"])
        result = manager.sweep()
    for warning in result.pop("warnings"):
        module.warn(warning)
    if result["failed"]:
        reasons = "; ".join("%s: %s" % item for item in sorted(result["failed"].items()))
        module.fail_json(msg="Could not revert %d expired override(s): %s" % (len(result["failed"]), reasons), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
