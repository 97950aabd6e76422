#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check what a new definition bundle needs before it is deployed (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_preflight_info
short_description: Check a CEPtra policy bundle against the cluster and the history before deploying it
version_added: 0.1.0
description:
  - The preflight of a policy deployment with extended backfill (operations guide, scenario 3,
    step 1). Changes nothing on the cluster or in the history.
  - Validates the bundle with C(POST /v1/definitions/validate) (a refusal is reported as a
    finding, not a task failure) and lists the metrics a shadow cannot upgrade from the active
    state, each with its reason, V(upgrade_false) (no C(upgrade(from,to)), the cluster waits for a
    WAL replay) or V(new_metric) (the active bundle has no such metric).
  - Reads the historic source and reports, per metric, the attributes its query reads (the
    source metric and the labels of C(by()) and of C(=)/C(=~) matchers) that no historic event
    provides.
  - Projects lanes per metric with the cluster's C(lane_domains) overrides against
    C(LANE_MAX_PER_PARTITION=64).
  - Checks that C(compacted_retention_ms) keeps the look-back to O(window_start_ns) and the
    longest query range, plus O(retention_margin_ms).
  - Reports per partition what a WAL replay from the latest full checkpoint rebuilds
    (RV(wal_coverage)), and computes the lateness and correction override that keeps the
    look-back mutable for the metrics the history feeds (RV(override_settings)).
  - Every finding is an item of RV(problems) whose message says what to fix; RV(ok) is true when
    there is none. Gate on RV(ok) (the C(ceptra.backfill.policy_preflight) role does).
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
options:
  src:
    description:
      - Path of the new bundle file (YAML or JSON) on the host that runs the module.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The new bundle as YAML or JSON text or as a mapping. Mutually exclusive with O(src).
    type: raw
  source:
    description:
      - The historic source, as for M(ceptra.backfill.historic_replay) (its C(window) limits the scan).
      - Without it the attribute check cannot run, which is itself a problem.
    type: dict
  part_ids:
    description: Partitions of the history to scan (default every partition in the source).
    type: list
    elements: str
  scan_limit:
    description:
      - At most this many historic events per partition are scanned for attributes (V(0) scans all);
        the C(complete) field of RV(history) says whether the scan was a sample.
    type: int
    default: 20000
  window_start_ns:
    description:
      - The oldest event time the extended replay will backfill (ns since the epoch); sets the
        look-back the compacted retention must keep.
    type: int
  retention_margin_ms:
    description: Retention needed on top of the look-back, so backfilled panes outlive the run.
    type: int
    default: 86400000
requirements:
  - PyYAML on the host that runs the module, for YAML bundles
  - psycopg 3 for a PostgreSQL historic source
seealso:
  - module: ceptra.backfill.bundle
  - module: ceptra.backfill.wal_replay
  - module: ceptra.backfill.historic_replay
"""

EXAMPLES = r"""
- name: Preflight of policy V+1
  ceptra.backfill.bundle_preflight_info:
    src: /srv/ceptra/bundles/policy-v2.yaml
    source: {type: postgresql, dsn: "host=archive dbname=events user=replay_ro"}
    window_start_ns: 1764547200000000000
  register: preflight

- name: "Gate: preflight of policy V+1"
  ansible.builtin.assert:
    that: preflight.ok
    fail_msg: "{{ preflight.problems | map(attribute='message') | join('; ') }}"
"""

RETURN = r"""
ok:
  description: True when no check found a problem.
  returned: always
  type: bool
problems:
  description: Findings, each C({check, message}) (C(check) one of V(bundle_invalid), V(lane_budget),
    V(attributes), V(retention)), with C(metric), C(missing), C(projected_lanes) or
    C(required_compacted_retention_ms) where they apply.
  returned: always
  type: list
  elements: dict
bundle_id:
  description: The id the cluster gives the bundle.
  returned: always
  type: str
active_bundle_id:
  description: The bundle active now.
  returned: always
  type: str
already_active:
  description: True when this bundle is already the active one.
  returned: always
  type: bool
replay_metrics:
  description: Metrics a shadow cannot upgrade, C({metric, reason}) with reason V(upgrade_false) or V(new_metric).
  returned: always
  type: list
  elements: dict
upgrade_false_metrics:
  description: Metrics whose aggregator has no C(upgrade(from,to)).
  returned: always
  type: list
  elements: str
new_metrics:
  description: Metrics the active bundle does not define.
  returned: always
  type: list
  elements: str
needs_wal_replay:
  description: True when the cluster will wait for a WAL replay before the shadow is Ready.
  returned: always
  type: bool
missing_attributes:
  description: Per metric, the attributes its query reads that the history does not provide.
  returned: when O(source) is given
  type: dict
  sample: {"flags_180d": ["label device of flags_total"]}
history:
  description: What the scan saw, C({metrics, events_scanned, partitions, complete}).
  returned: always
  type: dict
lane_projections:
  description: Per metric C({metric, labels, projected_lanes, status}).
  returned: always
  type: list
  elements: dict
retention:
  description: C(required_compacted_retention_ms), C(compacted_retention_ms), C(lookback_ms), C(longest_range_ms), C(ok).
  returned: always
  type: dict
wal_coverage:
  description: Per partition C(rebuilt_after_index) (the latest full checkpoint) and C(not_rebuilt) entries.
  returned: always
  type: dict
affected_metrics:
  description: The new bundle's metrics the history feeds (the extended replay's override covers exactly these).
  returned: always
  type: list
  elements: str
override_settings:
  description: The L and C override that keeps the look-back window mutable for the affected metrics,
    in the layout of C(GET /v1/config) (input of M(ceptra.backfill.config_override)).
  returned: always
  type: dict
  sample: {"metrics": {"flags_180d": {"lateness_allowance_ms": 867600000, "correction_horizon_ms": 867600000}}}
summary:
  description: The preflight as lines to read.
  returned: always
  type: list
  elements: str
report:
  description: The cluster's validation report.
  returned: always
  type: dict
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import load_bundle_explained
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._policy_preflight import preflight, summary_lines
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "src": {"type": "path"},
        "content": {"type": "raw"},
        "source": {"type": "dict"},
        "part_ids": {"type": "list", "elements": "str"},
        "scan_limit": {"type": "int", "default": 20000},
        "window_start_ns": {"type": "int"},
        "retention_margin_ms": {"type": "int", "default": 86400000},
    }, mutually_exclusive=[["src", "content"]], required_one_of=[["src", "content"]])
    params = module.params
    with module.reporting("run the bundle preflight"):
        bundle = load_bundle_explained(module.client, src=params["src"], content=params["content"])
        result = preflight(module.client, bundle, source=params["source"], part_ids=params["part_ids"],
                           scan_limit=params["scan_limit"], window_start_ns=params["window_start_ns"],
                           retention_margin_ms=params["retention_margin_ms"], open_source=open_source)
    result["summary"] = summary_lines(result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
