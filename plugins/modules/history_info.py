#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: history_info
short_description: What the historic source holds for a window - events, annotation coverage, attributes
version_added: 0.1.0
description:
  - Reads the rows of the historic source (the one M(ceptra.backfill.historic_replay) replays)
    for the given partitions and event-time window and reports, per partition, how many events
    there are, how many carry the secondary system's annotations (payload attributes
    O(annotation_attributes) or flags O(annotation_flags)) and so the coverage, how many lack
    each of O(required_attributes), the source metrics the events feed and their time range.
  - With O(queries) (the C(compiled_queries) of the active bundle, from
    M(ceptra.backfill.bundle_info)) it also names the bundle metrics those events feed
    (RV(impacted_metrics)), the metrics whose lateness and correction horizon a partial
    recovery widens, and no others.
  - Reads the source only; talks to no cluster. Runs the same in check mode.
author:
  - ceptra.backfill contributors (@ceptra)
options:
  source:
    description: The historic source, as for M(ceptra.backfill.historic_replay) (see C(docs/historic-source.md)).
    type: dict
    required: true
  partitions:
    description: Partitions to read (default every partition in the source).
    type: list
    elements: str
  window_start_ns:
    description: Only events at or after this event time (ns since the epoch).
    type: int
  window_end_ns:
    description: Only events before this event time.
    type: int
  annotation_attributes:
    description: Payload attributes that mark an event the secondary system annotated.
    type: list
    elements: str
    default: [secondary_classification, external_decision_id]
  annotation_flags:
    description: Event flags that mark an annotated event.
    type: list
    elements: str
    default: [DERIVED]
  required_attributes:
    description: Payload attributes every event must carry (missing ones are counted per partition).
    type: list
    elements: str
    default: []
  queries:
    description: Compiled queries of the active bundle (C(metric), C(source_metric)), to name the impacted metrics.
    type: list
    elements: dict
extends_documentation_fragment:
  - ceptra.backfill.attributes.info_module
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
requirements:
  - psycopg 3 for a PostgreSQL source
seealso:
  - module: ceptra.backfill.missing_window_info
  - module: ceptra.backfill.historic_replay
"""

EXAMPLES = r"""
- name: Annotation coverage of the missing window
  ceptra.backfill.history_info:
    source: {type: sqlite, path: /var/lib/ceptra/history.db}
    partitions: "{{ missing.partitions }}"
    window_start_ns: "{{ missing.window_start_ns }}"
    window_end_ns: "{{ missing.window_end_ns }}"
  register: coverage
"""

RETURN = r"""
partitions:
  description:
    - Per partition - C(events), C(annotated), C(coverage) (annotated / events; 1.0 for an empty
      window), C(stored_copies) (later copies of an event, not counted), C(bad_rows),
      C(missing_attributes) (attribute -> events without it), C(source_metrics), C(min_ts_ns), C(max_ts_ns).
  returned: success
  type: dict
events:
  description: Events in the window over all partitions.
  returned: success
  type: int
annotated:
  description: Annotated events over all partitions.
  returned: success
  type: int
coverage:
  description: Annotated share over all partitions.
  returned: success
  type: float
min_coverage:
  description: The lowest coverage of any partition.
  returned: success
  type: float
source_metrics:
  description: Source metrics the window's events feed.
  returned: success
  type: list
  elements: str
missing_attributes:
  description: Required attribute -> events without it, over all partitions.
  returned: success
  type: dict
impacted_metrics:
  description: Bundle metrics fed by the window's events (empty without O(queries)).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._recovery import impacted_metrics, summarize_history
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source


def main():
    """Run the module."""
    module = AnsibleModule(argument_spec={
        "source": {"type": "dict", "required": True},
        "partitions": {"type": "list", "elements": "str"},
        "window_start_ns": {"type": "int"},
        "window_end_ns": {"type": "int"},
        "annotation_attributes": {"type": "list", "elements": "str",
                                  "default": ["secondary_classification", "external_decision_id"]},
        "annotation_flags": {"type": "list", "elements": "str", "default": ["DERIVED"]},
        "required_attributes": {"type": "list", "elements": "str", "default": []},
        "queries": {"type": "list", "elements": "dict"},
    }, supports_check_mode=True)
    params = module.params
    spec = dict(params["source"])
    window = {}
    if params["window_start_ns"] is not None:
        window["start_ns"] = params["window_start_ns"]
    if params["window_end_ns"] is not None:
        window["end_ns"] = params["window_end_ns"]
    spec["window"] = window
    if params["partitions"] is not None:
        spec["part_ids"] = params["partitions"]
    source = None
    try:
        source = open_source(spec)
        summary = summarize_history(source, source.partitions(), params["annotation_attributes"],
                                    params["annotation_flags"], params["required_attributes"])
    except CeptraError as exc:
        module.fail_json(msg="Could not read the historic source: %s" % exc)
    finally:
        if source is not None:
            source.close()
    summary["impacted_metrics"] = impacted_metrics(params["queries"], summary["source_metrics"])
    module.exit_json(changed=False, **summary)


if __name__ == "__main__":
    main()
