#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_info
short_description: Read records from the CEPtra control-plane audit log
version_added: 0.1.0
description:
  - Reads C(GET /v1/audit) - config changes, rollbacks, bundle uploads, activations, replay
    jobs, outages and automation records - filtered by time, kind, actor and record id.
options:
  since:
    description:
      - Only records at or after this time - epoch seconds (or ms/ns), or an ISO 8601 timestamp.
    type: str
  kind:
    description:
      - Only records of this kind (V(config_change), V(outage), V(backfill_started), ...).
    type: str
  actor:
    description:
      - Only records written by this identity (a SPIFFE URI such as V(spiffe://ceptra.lab/role/operator)).
    type: str
  record_id:
    description:
      - Only records whose C(details.record_id) is this id (see M(ceptra.backfill.audit)).
    type: str
  limit:
    description:
      - Return at most this many records, the newest ones.
    type: int
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
"""

EXAMPLES = r"""
- name: Config changes of the last hour
  ceptra.backfill.audit_info:
    kind: config_change
    since: "{{ (now(utc=true).timestamp() - 3600) | int }}"
  register: changes

- name: Outages recorded by the cluster
  ceptra.backfill.audit_info:
    kind: outage
  register: outages
"""

RETURN = r"""
records:
  description: The matching records, oldest first.
  returned: success
  type: list
  elements: dict
  sample:
    - {"id": "a-3", "ts": 1732600000.5, "actor": "spiffe://ceptra.lab/role/operator",
       "kind": "config_change", "details": {"version": 4, "previous_version": 3}}
count:
  description: Number of returned records.
  returned: success
  type: int
  sample: 1
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import filter_records, read_records
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "since": {"type": "str"},
        "kind": {"type": "str"},
        "actor": {"type": "str"},
        "record_id": {"type": "str"},
        "limit": {"type": "int"},
    })
    params = module.params
    if params["limit"] is not None and params["limit"] < 0:
        module.fail_json(msg="limit must be 0 or more, got %s" % params["limit"])
    with module.reporting("read the audit log"):
        records = read_records(module.client, kind=params["kind"], since=params["since"])
    records = filter_records(records, params["kind"], params["actor"], params["record_id"], params["limit"])
    module.exit_json(changed=False, records=records, count=len(records))


if __name__ == "__main__":
    main()
