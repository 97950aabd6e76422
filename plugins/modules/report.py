#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: report
short_description: Write the run report - JSON, Markdown and an HTML page with charts
version_added: 0.1.0
description:
  - Writes a report a person can look at after a scenario - the verify checklist with the evidence
    of each check, the runs (operator, AWX job, task outcomes, failed tasks), the audit log's state,
    and the replay over time per partition (events done, replay rate, apply lag and replication
    lag against their thresholds).
  - Reads the replay progress from the audit log of the C(ceptra.backfill.audit) callback (one
    record per round of the replay loop) and from O(progress).
  - Writes C(<name>.json) (all the data), C(<name>.md), C(<name>.html) (one self-contained page,
    charts embedded) and the charts as C(<name>-<chart>.png) into O(dest).
  - The charts need the Python library matplotlib on the host the task runs on (an optional
    requirement of the collection). Without it the page and the Markdown show the same figures
    as tables and say so.
  - Files are only rewritten when their content differs, so a rerun on the same data changes nothing.
author:
  - ceptra.backfill contributors (@ceptra)
requirements:
  - matplotlib >= 3.5 (optional; charts)
options:
  dest:
    description: Directory to write the report into (created when missing).
    type: path
    required: true
  name:
    description: File name stem of the report files.
    type: str
    default: report
  title:
    description: Title of the report.
    type: str
    default: CEPtra backfill report
  checklist:
    description:
      - The verify checklist, one item per check, in the order to show.
      - Each item is a dict with C(name) (required, non-empty text), C(ok) (required - V(true),
        V(false), or V(null) for a check that was not made), C(evidence) (optional - text, a
        number, a list or a dict - what the check saw, shown as is; dicts and lists as indented
        JSON), C(section) (optional heading, for example the guide step) and C(id) (optional
        stable id). Any other key is an error.
      - The report passes (RV(summary.ok)) when every item is V(true) and the audit chain is intact.
    type: list
    elements: dict
    required: true
  audit_log:
    description:
      - The audit log to read task records and replay progress from. Default - E(CEPTRA_AUDIT_LOG)
        (set by the callback). Without a log the report holds the checklist and O(progress) only.
    type: path
  run_ids:
    description:
      - Runs of the audit log to report. Default - the latest run with replay progress, else the
        latest run other than the current one.
    type: list
    elements: str
  progress:
    description:
      - Extra replay progress - registered results of M(ceptra.backfill.historic_replay) (their
        C(finished_at) gives the time of each).
    type: list
    elements: dict
  thresholds:
    description:
      - Lag thresholds drawn on the lag charts - C(apply_lag_ms) (default 200) and C(replication_lag_ms)
        (default 250), the same as the replay's guardrails.
    type: dict
  charts:
    description:
      - V(auto) draws charts when matplotlib is installed, else tables; V(required) fails without
        matplotlib; V(none) writes tables only.
    type: str
    choices: [auto, required, none]
    default: auto
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports which files would change; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The report reads the audit log on the host the task runs on; run it on the controller
    (C(delegate_to=localhost)) when the play's hosts are not the controller.
seealso:
  - module: ceptra.backfill.audit_chain_info
"""

EXAMPLES = r"""
- name: Write the verify report
  ceptra.backfill.report:
    dest: "{{ playbook_dir }}/reports/{{ incident_id }}"
    title: "Partial recovery {{ incident_id }}"
    checklist:
      - name: Every partition applied the missing window
        section: Completion checklist
        ok: "{{ applied_ok }}"
        evidence: "{{ applied_counts }}"
      - name: Audit chain intact and anchored
        ok: "{{ audit_chain.ok }}"
        evidence: {head: "{{ audit_chain.head }}", problems: "{{ audit_chain.problems }}"}
      - name: Snapshot digests equal the reference
        ok: null
        evidence: not checked in this run
  delegate_to: localhost
  register: report
"""

RETURN = r"""
files:
  description: The report files - C(json), C(markdown), C(html) and C(charts) (list of PNG paths).
  returned: success
  type: dict
  sample: {"json": "/srv/reports/report.json", "markdown": "/srv/reports/report.md",
           "html": "/srv/reports/report.html", "charts": ["/srv/reports/report-rate.png"]}
changed_files:
  description: Files written (or, in check mode, that would be written or removed).
  returned: success
  type: list
  elements: str
summary:
  description: The verdict and the checklist counts.
  returned: success
  type: dict
  contains:
    ok:
      description: True when there is at least one item, every item is V(true) and the audit chain (when read) is intact.
      type: bool
    checklist_ok:
      description: True when there is at least one item and every item is V(true).
      type: bool
    items:
      description: Checklist items.
      type: int
    passed:
      description: Items with C(ok=true).
      type: int
    failed:
      description: Items with C(ok=false).
      type: int
    unchecked:
      description: Items with C(ok=null).
      type: int
    audit_chain_ok:
      description: Whether the audit log's chain is intact; null without an audit log.
      type: bool
charts_rendered:
  description: Whether the page has charts (false - tables).
  returned: success
  type: bool
charts_note:
  description: Why there are no charts, or null.
  returned: success
  type: str
runs:
  description: The audit-log runs the report covers.
  returned: success
  type: list
  elements: str
partitions:
  description: Per partition - C(part_id), C(status), C(events_done), C(events_total), C(pct), peak rate and lags.
  returned: success
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain_mod
from ansible_collections.ceptra.backfill.plugins.module_utils import _report as report_mod
from ansible_collections.ceptra.backfill.plugins.module_utils import _report_charts as charts_mod

NO_MATPLOTLIB = "Charts need the Python library matplotlib on the controller (pip install matplotlib); tables instead."


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "name": {"type": "str", "default": "report"},
            "title": {"type": "str", "default": "CEPtra backfill report"},
            "checklist": {"type": "list", "elements": "dict", "required": True},
            "audit_log": {"type": "path", "fallback": (env_fallback, ["CEPTRA_AUDIT_LOG"])},
            "run_ids": {"type": "list", "elements": "str"},
            "progress": {"type": "list", "elements": "dict"},
            "thresholds": {"type": "dict"},
            "charts": {"type": "str", "choices": ["auto", "required", "none"], "default": "auto"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["name"] or "/" in p["name"]:
        module.fail_json(msg="name must be a file name stem without '/', got %r" % p["name"])
    thresholds = {}
    for key, value in (p["thresholds"] or {}).items():
        if key not in report_mod.DEFAULT_THRESHOLDS:
            module.fail_json(msg="thresholds: unknown key %r; allowed: %s" % (key, ", ".join(report_mod.DEFAULT_THRESHOLDS)))
        try:
            thresholds[key] = float(value)
        except (TypeError, ValueError):
            module.fail_json(msg="thresholds.%s must be a number of ms, got %r" % (key, value))
    try:
        chain = None
        run_ids = []
        if p["audit_log"]:
            chain = chain_mod.verify_chain(p["audit_log"], keep=lambda record: True)
            if not chain["exists"]:
                module.fail_json(msg="the audit log %s does not exist (option audit_log / CEPTRA_AUDIT_LOG)" % chain["path"])
            run_ids = report_mod.select_runs(chain, p["run_ids"], os.environ.get("CEPTRA_AUDIT_RUN_ID"))
        elif p["run_ids"]:
            module.fail_json(msg="run_ids needs an audit log to read them from (audit_log or CEPTRA_AUDIT_LOG)")
        model = report_mod.build_model(p["title"], p["checklist"], chain, run_ids, p["progress"] or (), thresholds)
    except (report_mod.ReportError, chain_mod.AuditChainError) as exc:
        module.fail_json(msg="report: %s" % exc)

    charts, note = None, None
    if p["charts"] != "none" and model["progress"]:
        if charts_mod.load_matplotlib() is None:
            if p["charts"] == "required":
                module.fail_json(msg="report: charts=required, but matplotlib is not installed on this host "
                                     "(pip install matplotlib), or use charts=auto for tables")
            note = NO_MATPLOTLIB
        else:
            charts = charts_mod.render_charts(model)
    elif p["charts"] == "none":
        note = "Charts are turned off (charts=none); tables instead."

    dest = p["dest"]
    created_dir = not os.path.isdir(dest)
    if created_dir and not module.check_mode:
        os.makedirs(dest, 0o755)
    files = report_mod.plan_files(dest, p["name"], model, charts, note)
    stale = report_mod.stale_files(dest, p["name"], files, charts_mod.CHART_NAMES)
    try:
        changed_files = report_mod.write_files(files, stale, check_mode=module.check_mode)
    except OSError as exc:
        module.fail_json(msg="report: cannot write into %s: %s" % (dest, exc))
    chart_paths = [os.path.join(dest, "%s-%s.png" % (p["name"], c["name"])) for c in charts or []]
    module.exit_json(
        changed=bool(changed_files) or created_dir, changed_files=changed_files,
        files={"json": os.path.join(dest, "%s.json" % p["name"]), "markdown": os.path.join(dest, "%s.md" % p["name"]),
               "html": os.path.join(dest, "%s.html" % p["name"]), "charts": chart_paths},
        summary=model["summary"], charts_rendered=bool(charts), charts_note=note, runs=run_ids,
        partitions=model["partitions"])


if __name__ == "__main__":
    main()
