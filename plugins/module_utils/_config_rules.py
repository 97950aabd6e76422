# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: config override rules (bounds, known keys, dedup shrink, lane budget).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): whether a config override is allowed.

The config manager (``_config_manager``) runs these checks before anything is sent: known
keys and integer bounds of the contract, partition ids and ingress gates, the dedup shrink
rule, and the lane budget of the resulting ``lane_domains`` against the active bundle's
queries. A refusal is a ``ConfigManagerError`` built by ``refuse`` with ``violations``
``[{path, message}]``.
"""

from __future__ import annotations

import difflib

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_bounds, _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._config_ledger import ConfigManagerError

LANE_MAX_PER_PARTITION = 64
LANE_WARN_PER_PARTITION = 48

# Every knob and its bounds: _config_bounds (the lab enforces the same table).
KNOWN_TOP_LEVEL = sorted(_config_bounds.KNOWN_TOP_LEVEL - {"annotations"})
PER_METRIC_KEYS = _config_bounds.PER_METRIC_KEYS
NESTED_KEYS = {name: tuple(bounds) + ((_config_bounds.RATIO_KEY,) if name == "readiness" else ())
               for name, bounds in _config_bounds.NESTED_BOUNDS.items()}


def _shape(key):
    """Normalised path for rule lookup: metrics.<m>.x -> metrics.*.x, etc."""
    parts = key.split(".")
    if parts[0] in ("metrics", "partitions", "lane_domains") and len(parts) > 1:
        parts[1] = "*"
    return ".".join(parts)


def validate_leaves(leaves, known_top_level=(), partition_ids=None):
    """Violations ``[{path, message}]`` of the override's leaves against the contract's rules."""
    violations = []

    def bad(path, message):
        violations.append({"path": path, "message": message})

    for key, value in sorted(leaves.items()):
        parts, shape = key.split("."), _shape(key)
        top = parts[0]
        if top == "annotations":
            bad(key, "annotations are reserved for ledgers (this one keeps the override ledger); not an override target")
            continue
        if top not in KNOWN_TOP_LEVEL and top not in known_top_level:
            close = difflib.get_close_matches(top, sorted(KNOWN_TOP_LEVEL), n=1)
            hint = "did you mean %s? " % close[0] if close else ""
            bad(key, "unknown top-level key; %sknown keys: %s" % (hint, ", ".join(sorted(KNOWN_TOP_LEVEL))))
            continue
        if value is None:
            continue  # deleting a key during the override (back to the cluster default)
        if top in NESTED_KEYS and (len(parts) != 2 or parts[1] not in NESTED_KEYS[top]):
            close = difflib.get_close_matches(parts[-1], NESTED_KEYS[top], n=1)
            hint = "did you mean %s.%s? " % (top, close[0]) if close else ""
            bad(key, "unknown key; %s%s takes %s" % (hint, top, ", ".join(NESTED_KEYS[top])))
        elif top == "metrics" and (len(parts) != 3 or parts[2] not in PER_METRIC_KEYS):
            bad(key, "per-metric keys are metrics.<metric>.{%s}" % ",".join(PER_METRIC_KEYS))
        elif top == "partitions" and (len(parts) != 3 or parts[2] not in _config_bounds.PER_PARTITION_KEYS):
            bad(key, "per-partition keys are partitions.<part_id>.{%s}" % ",".join(_config_bounds.PER_PARTITION_KEYS))
        elif top == "partitions" and partition_ids is not None and parts[1] not in partition_ids:
            bad(key, "unknown partition %s; this cluster has %s" % (parts[1], ", ".join(partition_ids)))
        elif top == "lane_domains" and (len(parts) != 3 or parts[2] != "max_per_partition"):
            bad(key, "lane domains are lane_domains.<label>.max_per_partition")
        elif shape == "partitions.*.ingress_gate":
            if value not in _config_bounds.INGRESS_GATES:
                bad(key, "must be %s, got %r" % (" or ".join(_config_bounds.INGRESS_GATES), value))
        elif shape == "readiness.healthy_partition_ratio":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                bad(key, "must be a number in (0, 1], got %r" % (value,))
        elif top in _config_bounds.STRING_KEYS:
            if not isinstance(value, str):
                bad(key, "must be a string")
        elif isinstance(value, bool) or not isinstance(value, int):
            bad(key, "must be a whole number, got %r" % (value,))
        else:
            # a key only the cluster knows (known_top_level) has no bounds here: the cluster checks it
            low, high = _config_bounds.int_bounds(key) or (None, None)
            if low is not None and not low <= value <= high:
                bad(key, "%s is out of bounds; allowed [%s, %s]" % (value, low, high))
    return violations


def lane_budget(lane_domains, model):
    """Check a resulting ``lane_domains`` config against the active bundle's queries.

    ``model`` is ``{"domains": {label: N}, "queries": [{"metric", "labels"}]}`` or None (then
    each domain is checked alone: one label over 64 can never fit). Returns
    ``(violations, warnings, projections)``.
    """
    effective = dict((model or {}).get("domains") or {})
    for label, domain in (lane_domains or {}).items():
        if isinstance(domain, dict) and isinstance(domain.get("max_per_partition"), int):
            effective[label] = domain["max_per_partition"]
    if model is None:
        queries = [{"metric": None, "labels": [label]} for label in lane_domains or {}]
    else:
        queries = model.get("queries") or []
    violations, warnings, projections = [], [], []
    for query in queries:
        labels = list(query.get("labels") or [])
        if any(label not in effective for label in labels):
            continue  # the cluster rejects such a bundle itself; nothing to project
        lanes = 1
        for label in labels:
            lanes *= effective[label]
        projections.append({"metric": query.get("metric"), "labels": labels, "projected_lanes": lanes})
        where = "metric %s by (%s)" % (query.get("metric"), ", ".join(labels)) if query.get("metric") \
            else "lane domain %s alone" % labels[0]
        if lanes > LANE_MAX_PER_PARTITION:
            violations.append({"path": "lane_domains", "message": "%s would project %d lanes per partition, over "
                               "LANE_MAX_PER_PARTITION=%d" % (where, lanes, LANE_MAX_PER_PARTITION)})
        elif lanes >= LANE_WARN_PER_PARTITION:
            warnings.append("%s would project %d lanes per partition (>= %d, close to the limit %d)"
                            % (where, lanes, LANE_WARN_PER_PARTITION, LANE_MAX_PER_PARTITION))
    return violations, warnings, projections


def lane_model_from_report(bundle, report):
    """Lane model from a bundle (its ``lane_domains``) and its validate report (query labels)."""
    section = bundle.get("bundle") if isinstance(bundle.get("bundle"), dict) else bundle
    domains = {}
    for label, domain in (section.get("lane_domains") or {}).items():
        value = domain.get("max_per_partition") if isinstance(domain, dict) else domain
        if isinstance(value, int):
            domains[label] = value
    return {"domains": domains, "queries": _queries_of(report)}


def lane_model_from_definitions(definitions):
    """Lane model from GET /v1/definitions when the cluster exposes the active bundle's queries, else None."""
    active = definitions.get("active") or {}
    candidates = [active] + [entry for entry in definitions.get("bundles") or []
                             if entry.get("bundle_id") == active.get("bundle_id")]
    for entry in candidates:
        queries = _queries_of(entry)
        domains = entry.get("lane_domains")
        if queries and isinstance(domains, dict):
            return lane_model_from_report({"lane_domains": domains}, entry)
    return None


def _queries_of(doc):
    queries = []
    report = doc.get("lane_report") if isinstance(doc.get("lane_report"), dict) else {}
    for item in (doc.get("compiled_queries") or report.get("projections") or []):
        labels = item.get("labels") if isinstance(item, dict) else None
        if isinstance(labels, (list, tuple)):
            queries.append({"metric": item.get("metric"), "labels": list(labels)})
    return queries


def refuse(violations, warnings=None):
    """ConfigManagerError for an override refused before anything was sent."""
    lines = "; ".join("%s: %s" % (item["path"], item["message"]) for item in violations)
    return ConfigManagerError("override refused before anything was sent: %s" % lines,
                              violations=violations, warnings=warnings or [])


def partition_ids(client):
    """Ids (as strings) of the cluster's partitions from GET /v1/state."""
    state = client.get_json("state") or {}
    return _partitions.sort_ids(part_id for part_id, _entry in _partitions.items(state.get("partitions")))


def dedup_shrink_violations(client, leaves, config):
    """Violations of the dedup shrink rule: no shrinking while any partition's dedup is over 70% full.

    GET /v1/state is read only when the override shrinks ``dedup_capacity_per_partition``.
    """
    wanted = leaves.get("dedup_capacity_per_partition")
    current = config.get("dedup_capacity_per_partition")
    if not isinstance(wanted, int) or not isinstance(current, int) or wanted >= current:
        return []
    state = client.get_json("state") or {}
    full = []
    for part_id, part in _partitions.sorted_items(state.get("partitions")):
        dedup = part.get("dedup") if isinstance(part, dict) else None
        if isinstance(dedup, dict) and dedup.get("capacity") and dedup.get("occupancy", 0) / dedup["capacity"] > 0.7:
            full.append("%s (%s/%s)" % (part_id, dedup.get("occupancy"), dedup["capacity"]))
    if full:
        return [{"path": "dedup_capacity_per_partition",
                 "message": "may not shrink while dedup occupancy is over 70%% on partition(s) %s" % ", ".join(full)}]
    return []
