#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit
short_description: Write a record to the CEPtra control-plane audit log
version_added: 0.1.0
description:
  - Adds an automation record (C(POST /v1/audit)) such as an incident id, a replay summary or
    a change ticket. The cluster stores the caller's identity as the record's C(actor).
  - Idempotent - every record carries C(details.record_id). When a record of the same
    O(kind) with that C(record_id) already exists, nothing is written and the module reports
    C(changed=false). Without O(record_id), the id is derived from O(kind) and O(details), so
    re-running the same task writes the record once. Set O(always_write=true) to write a new
    record on every run.
options:
  kind:
    description:
      - Record kind, for example V(backfill_started), V(incident) or V(replay_summary).
    type: str
    required: true
  details:
    description:
      - Free-form record content (a JSON object).
    type: dict
    default: {}
  record_id:
    description:
      - Idempotency id stored as C(details.record_id). Default - a hash of O(kind) and O(details).
    type: str
  always_write:
    description:
      - Write a new record on every run (no C(record_id) is added and no lookup is made).
    type: bool
    default: false
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Looks the record up and reports whether it would be written; writes nothing.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Record the start of the partial recovery for incident INC-4711
  ceptra.backfill.audit:
    kind: backfill_started
    record_id: INC-4711-start
    details:
      incident: INC-4711
      partitions: ["3"]
      window: {start_ts_ns: 1732600000000000000, end_ts_ns: 1732600060000000000}
"""

RETURN = r"""
record:
  description:
    - The record as stored (when written or found), or the record that would be written
      (check mode; no C(id), C(ts) or C(actor) yet).
  returned: success
  type: dict
  sample: {"id": "a-12", "ts": 1732600000.5, "actor": "spiffe://ceptra.lab/role/operator",
           "kind": "backfill_started", "details": {"incident": "INC-4711", "record_id": "INC-4711-start"}}
record_id:
  description: The idempotency id of the record (null with O(always_write=true)).
  returned: success
  type: str
  sample: INC-4711-start
existing:
  description: Whether an identical record was already in the audit log.
  returned: success
  type: bool
  sample: false
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import derived_record_id, find_record, write_record
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "kind": {"type": "str", "required": True},
        "details": {"type": "dict", "default": {}},
        "record_id": {"type": "str"},
        "always_write": {"type": "bool", "default": False},
    }, mutually_exclusive=[("record_id", "always_write")])
    kind = module.params["kind"].strip()
    if not kind:
        module.fail_json(msg="kind must be a non-empty string")
    details = dict(module.params["details"] or {})
    given_id = details.get("record_id")
    if module.params["record_id"] and given_id not in (None, module.params["record_id"]):
        module.fail_json(msg="record_id=%r differs from details.record_id=%r; give only one"
                         % (module.params["record_id"], given_id))
    record_id = None
    if not module.params["always_write"]:
        record_id = module.params["record_id"] or given_id or derived_record_id(kind, details)
        details["record_id"] = record_id
    wanted = {"kind": kind, "details": details}
    diff = {"before": {}, "after": wanted}
    with module.reporting("write the %s audit record" % kind):
        existing = find_record(module.client, kind, record_id) if record_id else None
        if existing is not None:
            module.exit_json(changed=False, record=existing, record_id=record_id, existing=True)
        if module.check_mode:
            module.exit_json(changed=True, record=wanted, record_id=record_id, existing=False, diff=diff)
        record = write_record(module.client, kind, details)
    module.exit_json(changed=True, record=record or wanted, record_id=record_id, existing=False, diff=diff)


if __name__ == "__main__":
    main()
