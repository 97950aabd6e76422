#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the CEPtra config, its version and the override ledger."""

from __future__ import annotations

DOCUMENTATION = r"""
module: config_info
short_description: Read the CEPtra config, its version and the override ledger
version_added: 0.1.0
description:
  - Reads C(GET /v1/config) and returns the config, its version and the overrides staged by
    M(ceptra.backfill.config_override), each with its remaining validity.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
options:
  names:
    description:
      - Only list these overrides (all when not set).
    type: list
    elements: str
notes:
  - Needs the C(observer) role.
seealso:
  - module: ceptra.backfill.config_override
  - module: ceptra.backfill.config_override_sweep
"""

EXAMPLES = r"""
- name: List active overrides
  ceptra.backfill.config_info:
    url: https://ceptra.example:8443
    client_cert: /etc/ceptra/observer.pem
    client_key: /etc/ceptra/observer-key.pem
  register: cfg

- name: Fail when an override outlived its window (the sweep did not run)
  ansible.builtin.assert:
    that: cfg.expired | length == 0
    fail_msg: "expired overrides still applied: {{ cfg.expired }}"
"""

RETURN = r"""
config:
  description: The current config (including C(annotations) and the ledger).
  returned: always
  type: dict
config_version:
  description: The current config version.
  returned: always
  type: int
overrides:
  description:
    - Ledger entries (see M(ceptra.backfill.config_override) RV(ceptra.backfill.config_override#module:override)),
      each with C(remaining_s), C(expired) and C(keys) added, sorted by name.
  returned: always
  type: list
  elements: dict
expired:
  description: Names of overrides whose validity ended and that the sweep has not reverted yet.
  returned: always
  type: list
  elements: str
now:
  description: The time remaining validity was computed at (ISO 8601 UTC).
  returned: always
  type: str
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import ConfigManager
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={"names": {"type": "list", "elements": "str"}})
    with module.reporting("read the config"):
        result = ConfigManager(module.client, actor="config_info").info(module.params["names"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
