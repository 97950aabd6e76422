#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_log_check
short_description: Gate - fail unless this run is being written to an intact, writable audit log
version_added: 0.1.0
description:
  - The first gate of a scenario. Ansible only warns when a callback fails, so a run whose audit
    log cannot be written would go on unaudited; this task fails instead.
  - Fails when the C(ceptra.backfill.audit) callback is not recording this run (no
    E(CEPTRA_AUDIT_RUN_ID), or the log holds no C(run_start) record of that run), when the log
    cannot be appended to (permissions, a directory, a lock error, less than 1 MiB free), or
    when its chain is broken (the callback never extends a damaged chain).
  - Writes nothing. Run it on the controller, where the log is (C(delegate_to=localhost) when
    the play's hosts are not the controller); tasks there see the E(CEPTRA_AUDIT_LOG) and
    E(CEPTRA_AUDIT_RUN_ID) that the callback sets.
author:
  - ceptra.backfill contributors (@ceptra)
options:
  path:
    description: The audit log. Default - E(CEPTRA_AUDIT_LOG) (set by the callback).
    type: path
  run_id:
    description: The run that must be recorded. Default - E(CEPTRA_AUDIT_RUN_ID) (set by the callback).
    type: str
extends_documentation_fragment:
  - ceptra.backfill.attributes.info_module
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
seealso:
  - module: ceptra.backfill.audit_chain_info
"""

EXAMPLES = r"""
- name: "Gate: this run is recorded in a writable, intact audit log"
  ceptra.backfill.audit_log_check:
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The audit log checked.
  returned: success
  type: str
run_id:
  description: The run found recorded in it.
  returned: success
  type: str
head:
  description: The log's last record (C(seq), C(hash), C(time), C(run)).
  returned: success
  type: dict
records:
  description: Lines in the log.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain_mod

ENABLE_HINT = ("enable the ceptra.backfill.audit callback (ANSIBLE_CALLBACKS_ENABLED=ceptra.backfill.audit, or "
               "callbacks_enabled in ansible.cfg) and run this task on the controller (delegate_to: localhost)")


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "fallback": (env_fallback, ["CEPTRA_AUDIT_LOG"])},
            "run_id": {"type": "str", "fallback": (env_fallback, ["CEPTRA_AUDIT_RUN_ID"])},
        },
        supports_check_mode=True,
    )
    path, run_id = module.params["path"], module.params["run_id"]
    gate = "Gate audit log"
    if not run_id or not path:
        module.fail_json(msg="%s: this run is not being audited (no %s): %s" % (
            gate, "CEPTRA_AUDIT_RUN_ID" if not run_id else "CEPTRA_AUDIT_LOG", ENABLE_HINT))
    reason = chain_mod.writable_problem(path)
    if reason:
        module.fail_json(msg="%s: the audit log cannot be written: %s. Fix the permissions or the path "
                             "(callback option log_path, CEPTRA_AUDIT_LOG), then rerun" % (gate, reason), path=path)
    try:
        report = chain_mod.verify_chain(path, keep=lambda r: r.get("event") == "run_start" and r.get("run") == run_id)
    except chain_mod.AuditChainError as exc:
        module.fail_json(msg="%s: %s" % (gate, exc), path=path)
    if not report["ok"]:
        module.fail_json(msg="%s: the audit chain of %s is broken, so the callback does not extend it: %s. Keep the "
                             "file as evidence (move it aside) and rerun to start a new log"
                         % (gate, report["path"], "; ".join(report["problems"][:5])), path=report["path"],
                         problems=report["problems"])
    if not report["kept"]:
        module.fail_json(msg="%s: the audit log %s holds no record of run %s, so the callback is not writing it: %s"
                         % (gate, report["path"], run_id, ENABLE_HINT), path=report["path"], run_id=run_id)
    module.exit_json(changed=False, path=report["path"], run_id=run_id, head=report["head"], records=report["records"])


if __name__ == "__main__":
    main()
