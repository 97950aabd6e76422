#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: readiness_info
short_description: Read CEPtra readiness, optionally waiting for a condition
version_added: 0.1.0
description:
  - Reads C(GET /readyz) (a 200 and a 503 answer both carry the readiness document) and
    returns it in one normalized shape, whatever variant the cluster serves (the spec
    shape, the reference implementation's partition array, bare-number threshold and
    C(*_exceeded) reason names, or a Clustor C(readiness) list).
  - With O(wait_for), polls until the condition holds, or fails after O(wait_timeout) with
    a message naming what is still not ready and why.
options:
  wait_for:
    description:
      - V(none) reads once.
      - V(ready) waits until the cluster reports ready.
      - V(partitions_ready) waits until every partition in O(partitions) (default all) is ready.
      - V(reasons_clear) waits until none of O(reasons) (default any reason) is reported for
        the cluster or for the partitions in O(partitions) (default all).
      - V(jmespath) waits until the O(jmespath) expression over the normalized document
        (RV(readiness)) is true.
    type: str
    choices: [none, ready, partitions_ready, reasons_clear, jmespath]
    default: none
  partitions:
    description:
      - Partition ids the wait condition looks at (default all partitions).
      - A partition that C(/readyz) does not report fails the task on the first read, naming
        the partitions it reports (partitions do not appear by waiting).
    type: list
    elements: str
  reasons:
    description:
      - Reasons that must clear for O(wait_for=reasons_clear), in the spec vocabulary
        (V(warmup), V(apply_lag), V(replication_lag), V(definition_warmup_pending), ...).
        Reference names such as V(apply_lag_exceeded) are accepted too.
    type: list
    elements: str
  jmespath:
    description:
      - JMESPath expression over RV(readiness) for O(wait_for=jmespath); the wait ends when
        it evaluates to a true value. Requires the C(jmespath) Python library.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the condition before failing.
    type: int
    default: 300
  wait_interval:
    description:
      - Seconds between two reads while waiting.
    type: float
    default: 2
requirements:
  - jmespath (only for O(wait_for=jmespath))
extends_documentation_fragment:
  - ceptra.backfill.connection
  - ceptra.backfill.attributes
attributes:
  check_mode:
    support: full
    details: Read-only; waits the same in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Wait until the whole cluster is ready
  ceptra.backfill.readiness_info:
    wait_for: ready
    wait_timeout: 600

- name: Wait until apply and replication lag clear on the partitions being backfilled
  ceptra.backfill.readiness_info:
    wait_for: reasons_clear
    reasons: [apply_lag, replication_lag]
    partitions: ["2", "3"]

- name: Wait until no partition is in shadow warmup
  ceptra.backfill.readiness_info:
    wait_for: jmespath
    jmespath: "length(values(partitions)[?contains(reasons, 'definition_warmup_pending')]) == `0`"
"""

RETURN = r"""
ready:
  description: Whether the cluster reports ready.
  returned: success
  type: bool
  sample: true
not_ready_partitions:
  description: Ids of the partitions that are not ready.
  returned: success
  type: list
  elements: str
  sample: ["3"]
condition_met:
  description: Whether the O(wait_for) condition holds (always true on success when waiting).
  returned: success
  type: bool
  sample: true
waited:
  description: Seconds spent waiting.
  returned: success
  type: float
  sample: 4.2
polls:
  description: How many times C(/readyz) was read.
  returned: success
  type: int
  sample: 3
unknown_partitions:
  description: Partitions of O(partitions) that C(/readyz) does not report.
  returned: failure, when O(partitions) names partitions that do not exist
  type: list
  elements: str
  sample: ["99"]
readiness:
  description:
    - The normalized readiness document.
    - C(partitions) maps each partition id to C(ready), C(reasons) (spec vocabulary),
      C(critical), C(metrics) (lags in ms), C(shadow_apply_state) and C(warmup_ready_ratio).
  returned: success
  type: dict
  sample:
    ready: false
    http_status: 503
    definition_bundle_id: gaming_cheat_detection@0a1b2c3d4e5f
    activation_barrier_id: null
    shadow_apply_state: Ready
    warmup_ready_ratio: 1.0
    partition_ready_ratio: 0.75
    readiness_digest: "sha256:..."
    threshold: {"healthy_partition_ratio": 0.99}
    reasons: ["insufficient_healthy_partitions"]
    partitions:
      "3": {"ready": false, "reasons": ["apply_lag"], "critical": false,
            "metrics": {"apply_lag_ms": 340, "replication_lag_ms": 20},
            "shadow_apply_state": null, "warmup_ready_ratio": null}
    not_ready_partitions: ["3"]
"""

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._client import RETRYABLE_STATUSES
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._module import CeptraModule
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import (
    describe_not_ready,
    fetch_readiness,
    normalize_reason,
)
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until

try:
    import jmespath
    JMESPATH_IMPORT_ERROR = None
    JMESPATH_ERRORS = (jmespath.exceptions.JMESPathError,)
except ImportError:
    jmespath = None
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
    JMESPATH_ERRORS = ()


def check_condition(doc, wait_for, partitions=None, reasons=None, expression=None):
    """Return ``(met, what_is_still_missing)`` for one readiness document."""
    if wait_for in (None, "none"):
        return True, ""
    if wait_for == "ready":
        return (True, "") if doc["ready"] else (False, describe_not_ready(doc) or "the cluster is not ready")
    selected = list(doc["partitions"]) if partitions is None else partitions
    if wait_for == "partitions_ready":
        if not selected:
            return False, "/readyz reports no partitions"
        missing = [pid for pid in selected if not doc["partitions"].get(pid, {}).get("ready")]
        return (not missing), describe_not_ready(doc, missing) if missing else ""
    if wait_for == "reasons_clear":
        wanted = None if not reasons else {normalize_reason(reason) for reason in reasons}
        still = []
        cluster_hits = [r for r in doc["reasons"] if wanted is None or r in wanted]
        if cluster_hits and partitions is None:
            still.append("cluster still reports %s" % ", ".join(cluster_hits))
        for pid in selected:
            entry = doc["partitions"].get(pid)
            if entry is None:
                if partitions is not None:
                    still.append("partition %s is not reported by /readyz" % pid)
                continue
            hits = [r for r in entry["reasons"] if wanted is None or r in wanted]
            if hits:
                lags = ["%s=%g" % (k, v) for k, v in sorted(entry["metrics"].items()) if k.endswith("lag_ms")]
                still.append("partition %s still reports %s%s" % (pid, ", ".join(hits),
                                                                  " (%s)" % ", ".join(lags) if lags else ""))
        return (not still), "; ".join(still)
    if wait_for == "jmespath":
        value = expression.search(doc)
        if value:
            return True, ""
        return False, "the expression %r is still false (it evaluates to %r)" % (expression.expression, value)
    raise ValueError(wait_for)


def _compile(module, params):
    """The compiled jmespath expression for ``wait_for: jmespath`` (None otherwise); fails the task when unusable."""
    if params["wait_for"] != "jmespath":
        return None
    if jmespath is None:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
    try:
        return jmespath.compile(params["jmespath"])
    except jmespath.exceptions.JMESPathError as exc:
        module.fail_json(msg="The jmespath expression %r is not valid: %s" % (params["jmespath"], exc))
    return None  # not reached: fail_json exits


def _looker(module, params, expression):
    """One look for poll_until: ``(met, (readiness document or None, what is missing, read error or None))``.

    Outages are expected while waiting (that is often why we wait) and are looked past;
    any other failed read (401, 403, 404, TLS) will not fix itself and ends the wait.
    """
    def look():
        try:
            doc = fetch_readiness(module.client)
        except CeptraError as err:
            if params["wait_for"] == "none" or (err.status is not None and err.status not in RETRYABLE_STATUSES):
                raise
            return False, (None, "", err)
        unknown = _partitions.unknown_ids(params["partitions"] or (), doc["partitions"])
        if unknown and doc["partitions"]:
            # partitions do not appear by waiting: end the wait at once
            raise CeptraError(_partitions.describe_unknown(unknown, doc["partitions"], "/readyz"),
                              unknown_partitions=unknown, condition_met=False, readiness=doc)
        try:
            met, still = check_condition(doc, params["wait_for"], params["partitions"], params["reasons"], expression)
        except JMESPATH_ERRORS as exc:
            module.fail_json(msg="The jmespath expression %r failed on the readiness document: %s"
                             % (params["jmespath"], exc))
        return met, (doc, still, None)
    return look


def main():
    """Run the module."""
    module = CeptraModule(argument_spec={
        "wait_for": {"type": "str", "default": "none",
                     "choices": ["none", "ready", "partitions_ready", "reasons_clear", "jmespath"]},
        "partitions": {"type": "list", "elements": "str"},
        "reasons": {"type": "list", "elements": "str"},
        "jmespath": {"type": "str"},
        "wait_timeout": {"type": "int", "default": 300},
        "wait_interval": {"type": "float", "default": 2},
    }, required_if=[("wait_for", "jmespath", ["jmespath"])])
    params = module.params
    if params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout must be 0 or more seconds, got %s" % params["wait_timeout"])
    if params["wait_interval"] <= 0:
        module.fail_json(msg="wait_interval must be greater than 0 seconds, got %s" % params["wait_interval"])
    look = _looker(module, params, _compile(module, params))
    with module.reporting("read the cluster readiness (/readyz)"):
        poll = poll_until(look, params["wait_timeout"], params["wait_interval"])
    doc, still, error = poll.value
    if poll.done:
        module.exit_json(changed=False, ready=doc["ready"], not_ready_partitions=doc["not_ready_partitions"],
                         condition_met=True, waited=round(poll.waited, 3), polls=poll.polls, readiness=doc)
    waited = round(poll.waited, 1)
    if doc is None:
        module.fail_from(error, "wait for %s within %ss (the last read failed)" % (params["wait_for"], waited),
                         condition_met=False, polls=poll.polls)
    module.fail_json(msg="Timed out after %ss waiting for %s: %s" % (waited, _what(params["wait_for"], params), still),
                     condition_met=False, ready=doc["ready"], not_ready_partitions=doc["not_ready_partitions"],
                     waited=waited, polls=poll.polls, readiness=doc)


def _what(wait_for, params):
    if wait_for == "partitions_ready":
        return "partitions %s to be ready" % ", ".join(params["partitions"]) if params["partitions"] else "every partition to be ready"
    if wait_for == "reasons_clear":
        return "readiness reasons %s to clear" % ", ".join(params["reasons"]) if params["reasons"] else "every readiness reason to clear"
    if wait_for == "jmespath":
        return "the jmespath condition"
    return "the cluster to be ready"


if __name__ == "__main__":
    main()
