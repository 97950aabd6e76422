#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a CEPtra definition bundle and upload it once."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle
short_description: Validate and upload a CEPtra definition bundle
version_added: 0.1.0
description:
  - Sends a definition bundle (YAML or JSON) to C(POST /v1/definitions/validate) and, with
    O(state=present), uploads it with C(POST /v1/definitions) unless the cluster already holds
    an identical bundle (same C(bundle_id), which the cluster derives from the content).
  - After an upload the partitions prepare the bundle in shadow; wait for that with
    M(ceptra.backfill.bundle_info) and activate it with M(ceptra.backfill.activation).
  - A bundle the cluster rejects (HTTP 422) fails the task with every violation's path and message.
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Validates the bundle (a read-only call) and reports whether it would be uploaded.
  diff_mode:
    support: full
    details: Shows the list of bundle ids on the cluster before and after.
options:
  src:
    description:
      - Path of the bundle file (YAML or JSON) on the host that runs the module.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The bundle itself, as YAML or JSON text or as an already parsed mapping.
      - Anything else (a number, a list) fails the task; quote text that YAML would read as a number.
      - Mutually exclusive with O(src).
    type: raw
  state:
    description:
      - V(validated) only validates (never changes anything).
      - V(present) validates, then uploads the bundle unless the cluster already holds it.
    type: str
    choices: [validated, present]
    default: present
requirements:
  - PyYAML on the host that runs the module, for YAML bundles
notes:
  - Uploading needs the C(operator) role; validating needs C(operator) too on the lab.
seealso:
  - module: ceptra.backfill.bundle_info
  - module: ceptra.backfill.activation
"""

EXAMPLES = r"""
- name: Validate a bundle without uploading it
  ceptra.backfill.bundle:
    url: https://ceptra.example:8443
    client_cert: /etc/ceptra/operator.pem
    client_key: /etc/ceptra/operator-key.pem
    src: /srv/bundles/gaming_cheat_detection.yaml
    state: validated

- name: Upload the bundle (a no-op when the cluster already has it)
  ceptra.backfill.bundle:
    src: /srv/bundles/gaming_cheat_detection.yaml
  register: uploaded

- name: Upload a bundle kept in the inventory
  ceptra.backfill.bundle:
    content: "{{ lookup('ansible.builtin.file', 'bundles/iot.yaml') }}"
"""

RETURN = r"""
bundle_id:
  description: The bundle's id on the cluster (name@content hash).
  returned: always
  type: str
  sample: gaming_liveops_cheat_detection@3f2a9c0d11aa
bundle_name:
  description: The bundle's name.
  returned: always
  type: str
report:
  description: The validation report of C(POST /v1/definitions/validate) (compiled queries, lane report, warnings).
  returned: always
  type: dict
warnings_from_cluster:
  description: Warnings of the validation report (for example projected lanes at or above 48).
  returned: always
  type: list
  elements: str
uploaded:
  description: Whether this run uploaded the bundle.
  returned: always
  type: bool
would_upload:
  description: In check mode, true when a real run would upload the bundle.
  returned: when check mode would upload
  type: bool
state:
  description: The bundle's state on the cluster (for example V(distributed) or V(active)).
  returned: when O(state=present)
  type: str
violations:
  description: The cluster's validation violations (each with C(path) and C(message)).
  returned: failure on HTTP 422
  type: list
  elements: dict
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import ensure_bundle, load_bundle_explained
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "src": {"type": "path"},
        "content": {"type": "raw"},
        "state": {"type": "str", "choices": ["validated", "present"], "default": "present"},
    }, mutually_exclusive=[["src", "content"]], required_one_of=[["src", "content"]])
    with module.reporting("validate or upload the bundle"):
        bundle = load_bundle_explained(module.client, src=module.params["src"], content=module.params["content"])
        result = ensure_bundle(module.client, bundle, state=module.params["state"], check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
