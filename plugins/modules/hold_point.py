#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: hold_point
short_description: Hold a scenario before a step until an operator removes a hold file
version_added: 0.1.0
description:
  - A hold point before a cut-over step (opening ingress, restoring defaults), modelled on
    gh-ost's postpone flag file. On arrival the module creates O(path) (unless it exists) and then
    waits while the file exists. The operator looks at the cluster and removes the file to let the
    run go on; when O(timeout) passes first, the task fails, naming the step and the file.
  - Check mode neither creates the file nor waits; it reports that the run would hold.
  - Runs on the controller (or wherever the hold file should live); no connection options.
author:
  - ceptra.backfill contributors (@ceptra)
options:
  path:
    description: The hold file. Its directory must exist.
    type: path
    required: true
  step:
    description: The step that waits (shown in the result and the failure message).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the file to be removed before failing.
    type: int
    default: 3600
  interval:
    description: Seconds between two checks.
    type: float
    default: 1
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the hold without creating the file or waiting.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: "Gate: hold before restoring the defaults"
  ceptra.backfill.hold_point:
    path: /var/lib/ceptra-backfill/INC-4711.hold-restore_defaults
    step: restore_defaults
    timeout: 7200
"""

RETURN = r"""
held:
  description: True when the run waited (or, in check mode, would wait) at this point.
  returned: success
  type: bool
waited_s:
  description: Seconds waited.
  returned: success
  type: float
path:
  description: The hold file.
  returned: success
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until


def main():
    """Run the module."""
    module = AnsibleModule(argument_spec={
        "path": {"type": "path", "required": True},
        "step": {"type": "str", "required": True},
        "timeout": {"type": "int", "default": 3600},
        "interval": {"type": "float", "default": 1},
    }, supports_check_mode=True)
    path, step = module.params["path"], module.params["step"]
    if module.check_mode:
        module.exit_json(changed=False, held=True, waited_s=0.0, path=path,
                         msg="would hold before %s until %s is removed" % (step, path))
    if not os.path.isdir(os.path.dirname(path) or "."):
        module.fail_json(msg="hold point %s: the directory of %s does not exist; create it or choose another path"
                         % (step, path))
    if not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write("remove this file to let the run go on to step %s\n" % step)
    outcome = poll_until(lambda: (not os.path.exists(path), None), timeout=module.params["timeout"],
                         interval=module.params["interval"])
    if not outcome.done:
        module.fail_json(msg="Gate: hold before %s: %s is still there after %d s; remove it to let the run go on, "
                             "then rerun the scenario (it resumes)" % (step, path, module.params["timeout"]), path=path)
    module.exit_json(changed=False, held=True, waited_s=round(outcome.waited, 3), path=path)


if __name__ == "__main__":
    main()
