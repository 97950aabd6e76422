#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: derived_events_info
short_description: Derived events and sink counters of a test-mode cluster - was any decision delivered twice
version_added: 0.1.0
description:
  - Reads the derived events the rules emitted (C(GET /v1/test/derived-events), per partition,
    after a Raft index) and the test sink's delivery counters (C(GET /v1/test/sink)).
  - Reports decisions emitted under more than one C(derived_event_id) (the same source event,
    rule and channel; the id hashes the Raft index, so an event applied twice gives two ids and
    the sink would deliver both) in RV(decisions_emitted_twice), and re-emissions of an id the
    sink already saw (dropped by it, harmless) in RV(repeated_ids).
  - Test RPCs of the contract (assumed shape); they need a cluster in test mode.
options:
  partitions:
    description: Partitions to read (default every partition of C(/v1/state)).
    type: list
    elements: str
  since:
    description: Per partition id, only derived events of entries after this Raft index (default 0).
    type: dict
    default: {}
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
  - ceptra.backfill.attributes.info_module
notes:
  - Needs the C(observer) role.
"""

EXAMPLES = r"""
- name: No decision may be delivered twice after the replay
  ceptra.backfill.derived_events_info:
    partitions: ["1", "2"]
  register: derived
"""

RETURN = r"""
sink:
  description: The test sink's counters (C(received), C(delivered), C(duplicate_derived_event_id), ...).
  returned: success
  type: dict
partitions:
  description: Per partition - C(count) (derived events read), C(dropped), C(rule_errors).
  returned: success
  type: dict
derived_events:
  description: Derived events read over all partitions.
  returned: success
  type: int
decisions_emitted_twice:
  description: C({source_event_id, rule_id, channel, derived_event_ids}) of decisions emitted under several ids.
  returned: success
  type: list
  elements: dict
repeated_ids:
  description: Derived events whose id was emitted before (the sink drops them).
  returned: success
  type: int
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._recovery import derived_event_duplicates
from ansible_collections.ceptra.backfill.plugins.module_utils._snapshot import cluster_partitions


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "partitions": {"type": "list", "elements": "str"},
        "since": {"type": "dict", "default": {}},
    })
    params = module.params
    events = []
    partitions = {}
    with module.reporting("read the derived events"):
        part_ids = params["partitions"] or cluster_partitions(module.client)[0]
        for part_id in part_ids:
            body = module.client.get_json("test_derived_events", query={
                "part_id": str(part_id), "since": int(params["since"].get(str(part_id), 0) or 0)}) or {}
            listed = body.get("derived_events") or []
            events.extend(listed)
            partitions[str(part_id)] = {"count": len(listed), "dropped": body.get("dropped", 0),
                                        "rule_errors": body.get("rule_errors") or {}}
        sink = module.client.get_json("test_sink") or {}
    twice, repeated = derived_event_duplicates(events)
    module.exit_json(changed=False, sink=sink.get("sink", sink) if isinstance(sink, dict) else {},
                     partitions=partitions, derived_events=len(events), decisions_emitted_twice=twice,
                     repeated_ids=repeated)


if __name__ == "__main__":
    main()
