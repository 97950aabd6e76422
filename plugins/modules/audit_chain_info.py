#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_chain_info
short_description: Verify the hash-chained audit log and compare it with its latest anchor
version_added: 0.1.0
description:
  - Reads the audit log written by the C(ceptra.backfill.audit) callback and checks every
    record's hash and its link to the record before it, so an edited, deleted, inserted or
    reordered record is reported in RV(problems).
  - A cut tail leaves an intact chain. Give the latest anchor - the head sent to the control-plane
    audit log at the end of a run (see the examples) - as O(anchor), or the control-plane audit
    records read by M(ceptra.backfill.audit_info) as O(anchor_records); the log must then still
    hold the anchored record (same seq, same hash).
  - Returns the head (seq, hash) and RV(anchor_details), ready to be written as an anchor with
    M(ceptra.backfill.audit) and published with C(set_stats).
  - Reads the file on the host the task runs on; the log is on the controller, so run the task
    there (C(delegate_to=localhost) when the play's hosts are not the controller).
  - The anchor is taken as input rather than read here, so this module needs no connection to the
    cluster and the one reader of the control-plane audit log stays M(ceptra.backfill.audit_info).
author:
  - ceptra.backfill contributors (@ceptra)
options:
  path:
    description:
      - The audit log. Default - E(CEPTRA_AUDIT_LOG), which the callback sets for the tasks it runs.
    type: path
  anchor:
    description:
      - An anchor to compare with (C(chain), C(seq), C(hash); extra keys are ignored), for example
        RV(anchor_details) of an earlier run kept by the caller.
    type: dict
  anchor_records:
    description:
      - Control-plane audit records (the C(records) of M(ceptra.backfill.audit_info)); the newest
        record of kind C(audit_chain_anchor) for this log's chain is the anchor.
      - When none names this chain but one names the same log path on this controller, the log was
        replaced or emptied, which is reported as a problem. When the records hold no anchor for
        this log at all, that is a problem too (pass them only for a log that was anchored).
    type: list
    elements: dict
extends_documentation_fragment:
  - ceptra.backfill.attributes.info_module
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
notes:
  - See C(docs/audit-and-report.md) for the record format and the chain rules.
seealso:
  - module: ceptra.backfill.audit_log_check
  - module: ceptra.backfill.audit
  - module: ceptra.backfill.audit_info
"""

EXAMPLES = r"""
# At the end of a scenario run: anchor the chain head in the control-plane audit log and in AWX.
- name: Read the audit chain head
  ceptra.backfill.audit_chain_info:
  delegate_to: localhost
  register: audit_chain

- name: Anchor the audit chain head in the control-plane audit log
  ceptra.backfill.audit:
    kind: audit_chain_anchor
    details: "{{ audit_chain.anchor_details }}"

- name: Publish the audit chain head
  ansible.builtin.set_stats:
    data:
      ceptra_audit_head: "{{ audit_chain.head }}"

# In verify.yml: the chain is intact and still holds the latest anchor.
- name: Read the audit chain anchors
  ceptra.backfill.audit_info:
    kind: audit_chain_anchor
  register: anchors

- name: Verify the audit log against its latest anchor
  ceptra.backfill.audit_chain_info:
    anchor_records: "{{ anchors.records }}"
  delegate_to: localhost
  register: audit_chain

- name: "Gate: the audit log is intact"
  ansible.builtin.assert:
    that: audit_chain.ok
    fail_msg: "Audit log {{ audit_chain.path }} failed verification: {{ audit_chain.problems | join('; ') }}"
"""

RETURN = r"""
ok:
  description: True when the log exists, every record is intact and linked, and it matches the anchor (when one was given or found).
  returned: always
  type: bool
problems:
  description: What is wrong, one readable sentence each (line, seq and what it means).
  returned: always
  type: list
  elements: str
  sample: ["line 7 (seq 7) follows seq 5: 1 record(s) were removed"]
path:
  description: The log that was read.
  returned: always
  type: str
exists:
  description: Whether the log file exists.
  returned: always
  type: bool
records:
  description: Lines in the log.
  returned: always
  type: int
chain_id:
  description: The log's chain id (set by its first record).
  returned: always
  type: str
head:
  description: The last record - C(seq), C(hash), C(time), C(run). Null for a missing or empty log.
  returned: always
  type: dict
  sample: {"seq": 231, "hash": "4f1c...", "time": "2026-11-27T10:11:12.123456Z", "run": "awx-job-42"}
anchor:
  description: The anchor compared with (C(chain), C(seq), C(hash), ...), or null.
  returned: always
  type: dict
anchor_ok:
  description: Whether the log holds the anchored record; null when there was no anchor to compare.
  returned: always
  type: bool
records_after_anchor:
  description: Records after the anchored one (not protected against a cut until the next anchor); null without an anchor.
  returned: always
  type: int
anchor_details:
  description: The details of an anchor for the current head (C(chain), C(seq), C(hash), C(run_id), C(log_path), C(controller)), for M(ceptra.backfill.audit).
  returned: always
  type: dict
runs:
  description: Runs in the log, oldest first - C(run), C(first_seq), C(last_seq), C(records), C(operator), C(started), C(ended).
  returned: always
  type: list
  elements: dict
run_id:
  description: The run id the callback set for this run (E(CEPTRA_AUDIT_RUN_ID)), or null.
  returned: always
  type: str
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain_mod


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "fallback": (env_fallback, ["CEPTRA_AUDIT_LOG"])},
            "anchor": {"type": "dict"},
            "anchor_records": {"type": "list", "elements": "dict"},
        },
        mutually_exclusive=[("anchor", "anchor_records")],
        supports_check_mode=True,
    )
    params = module.params
    if not params["path"]:
        module.fail_json(msg="no audit log given: set path, or enable the ceptra.backfill.audit callback "
                             "(it sets CEPTRA_AUDIT_LOG for tasks on the controller)")
    try:
        report = chain_mod.verify_chain(params["path"])
    except chain_mod.AuditChainError as exc:
        module.fail_json(msg=str(exc))
    problems = list(report["problems"])
    if not report["exists"]:
        problems.insert(0, "the audit log %s does not exist" % report["path"])
    anchor = params["anchor"]
    if params["anchor_records"] is not None:
        anchor, other = chain_mod.latest_anchor(params["anchor_records"], report["chain_id"], report["path"],
                                                socket.gethostname())
        if anchor is None:
            anchor = other
            if other is None:
                problems.append("the control-plane audit log holds no anchor for %s (chain %s): it was never "
                                "anchored, or its anchors were not passed" % (report["path"], report["chain_id"]))
    anchor_ok = None
    after = None
    if anchor:
        found = chain_mod.anchor_problems(report, anchor)
        problems.extend(found)
        anchor_ok = not found
        if anchor_ok and report["head"]:
            after = int(report["head"]["seq"]) - int(anchor["seq"])
    runs = sorted(report["runs"].values(), key=lambda r: r["first_seq"])
    module.exit_json(
        changed=False, ok=not problems, problems=problems, path=report["path"], exists=report["exists"],
        records=report["records"], chain_id=report["chain_id"], head=report["head"], anchor=anchor,
        anchor_ok=anchor_ok, records_after_anchor=after, anchor_details=chain_mod.anchor_details(report),
        runs=runs, run_id=os.environ.get("CEPTRA_AUDIT_RUN_ID"))


if __name__ == "__main__":
    main()
