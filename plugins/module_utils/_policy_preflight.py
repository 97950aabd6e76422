# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the preflight of a policy deployment (guide scenario 3, step 1).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal helpers of ceptra.backfill (not a public API): what a new bundle needs before it is deployed.

A policy bundle V+1 is checked against the cluster and the historic source, changing nothing:

- which of its metrics need a WAL replay (``upgrade: false``, §18.8) or start empty (metrics
  the active bundle does not define: no state to upgrade from);
- which attributes its queries read (the source metric and the labels of ``by()`` and of
  positive matchers) that the history does not provide, per metric;
- its lane budget per metric against ``LANE_MAX_PER_PARTITION`` (64), with the cluster's
  ``lane_domains`` overrides (the cluster's own 422 is read as such a finding, not a crash);
- whether ``compacted_retention_ms`` keeps the look-back window and the longest query range;
- how much of each partition's log a WAL replay from the latest full checkpoint rebuilds
  (what lies at or before the checkpoint an ``upgrade: false`` metric cannot get back from it).

Every finding is a ``problem`` ``{check, message, ...}`` whose message says what to fix; the
caller (the ``policy_preflight`` role) gates on them. Only ``preflight`` talks to the cluster
and the source; the other functions are pure.
"""

from __future__ import annotations

import time

from ansible_collections.ceptra.backfill.plugins.module_utils import _definitions, _partitions

LANE_MAX_PER_PARTITION = 64
LANE_WARN_PER_PARTITION = 48
DEFAULT_SCAN_LIMIT = 20000
SCAN_PAGE = 2000
_MS = 1000000
# Matchers that select only samples carrying the label (a missing label reads as "").
_POSITIVE_OPERATORS = ("=", "=~")


# --------------------------------------------------------------------------- what the queries read


def query_attributes(query):
    """``(source_metric, [labels])`` an event must carry for ``query`` (a compiled-query summary).

    Labels: every ``by()`` label and every label of a ``=``/``=~`` matcher with a non-empty value
    (a ``!=``/``!~`` matcher, or one on ``""``, also matches events without the label).
    ``source_metric`` is None when the cluster's report does not name it.
    """
    labels = list(query.get("labels") or [])
    for matcher in query.get("matchers") or []:
        if not isinstance(matcher, (list, tuple)) or len(matcher) != 3:
            continue
        label, operator, value = matcher
        if label != "__name__" and operator in _POSITIVE_OPERATORS and value not in ("", None) and label not in labels:
            labels.append(label)
    return query.get("source_metric"), labels


def missing_attributes(queries, history):
    """Per metric, the attributes its query reads that no scanned historic event provides.

    ``history`` is :func:`scan_history` 's ``metrics``: ``{source_metric: [label names]}``.
    Returns ``{metric: ["<source_metric> (no event)" | "label <name> of <source_metric>", ...]}``
    for the metrics that miss something, and the metrics that could not be checked.
    """
    missing, unchecked = {}, []
    for query in queries:
        metric = query.get("metric")
        source_metric, labels = query_attributes(query)
        if source_metric is None:
            unchecked.append(metric)
            continue
        seen = history.get(source_metric)
        if seen is None:
            missing[metric] = ["%s (no event of this metric in the history)" % source_metric]
            continue
        absent = ["label %s of %s" % (label, source_metric) for label in labels if label not in seen]
        if absent:
            missing[metric] = absent
    return missing, unchecked


def scan_history(source, part_ids=None, limit=DEFAULT_SCAN_LIMIT):
    """Which metrics and labels the historic events carry (payload ``metric`` and ``labels``).

    Reads at most ``limit`` events per partition (0: all) in the source's order and window.
    Returns ``{"metrics": {source_metric: [labels]}, "events_scanned", "partitions", "complete"}``;
    ``complete`` is false when a partition had more events than ``limit``.
    """
    wanted = _partitions.sort_ids(part_ids) if part_ids else None
    partitions = [p for p in source.partitions() if wanted is None or p in wanted]
    metrics, scanned, complete = {}, 0, True
    for part_id in partitions:
        after, seq, count = None, 0, 0
        while True:
            page = SCAN_PAGE if not limit else min(SCAN_PAGE, limit - count)
            if page <= 0:
                complete = complete and not source.read(part_id, after, seq, 1)
                break
            rows = source.read(part_id, after, seq, page)
            if not rows:
                break
            for row in rows:
                count += 1
                payload = (row.event or {}).get("payload")
                if isinstance(payload, dict) and isinstance(payload.get("metric"), str):
                    labels = payload.get("labels")
                    names = metrics.setdefault(payload["metric"], set())
                    if isinstance(labels, dict):
                        names.update(str(name) for name in labels)
            after, seq = rows[-1].position, rows[-1].seq
        scanned += count
    return {"metrics": {name: sorted(labels) for name, labels in sorted(metrics.items())},
            "events_scanned": scanned, "partitions": partitions, "complete": complete}


# --------------------------------------------------------------------------- upgrade paths


def replay_metrics(new_queries, active_queries):
    """The metrics of the new bundle that a shadow cannot upgrade from the active state.

    Returns ``[{"metric", "reason"}]``: ``upgrade_false`` (the aggregator has no
    ``upgrade(from,to)``: the cluster waits for a WAL replay) or ``new_metric`` (the active
    bundle has no such metric: it starts empty and only a WAL replay or history fills it).
    """
    active = set(q.get("metric") for q in active_queries or [])
    found = []
    for query in new_queries:
        if query.get("upgrade") is False:
            found.append({"metric": query.get("metric"), "reason": "upgrade_false"})
        elif active_queries is not None and query.get("metric") not in active:
            found.append({"metric": query.get("metric"), "reason": "new_metric"})
    return found


# --------------------------------------------------------------------------- lanes


def lane_projection(queries, lane_domains, overrides):
    """Projected lanes per query: the product of the bounds of its ``by()`` labels (overrides win)."""
    bounds = dict(lane_domains or {})
    for label, spec in (overrides or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("max_per_partition"), int):
            bounds[label] = spec["max_per_partition"]
    projections = []
    for query in queries:
        lanes, unknown = 1, []
        for label in query.get("labels") or []:
            if label in bounds:
                lanes *= int(bounds[label])
            else:
                unknown.append(label)
        status = "rejected" if lanes > LANE_MAX_PER_PARTITION else "warning" if lanes >= LANE_WARN_PER_PARTITION else "ok"
        projections.append({"metric": query.get("metric"), "labels": list(query.get("labels") or []),
                            "projected_lanes": lanes, "status": status, "unknown_labels": unknown})
    return projections


def lane_problems(projections, violations=()):
    """Problems for queries over the lane budget, from our projection and from the cluster's 422."""
    problems = []
    for item in projections:
        if item["status"] == "rejected":
            problems.append(_problem("lane_budget", "metric %s projects %d lanes per partition (%s), above "
                                     "LANE_MAX_PER_PARTITION %d: group by fewer labels or lower their "
                                     "lane_domains bounds" % (item["metric"], item["projected_lanes"],
                                                              " x ".join(item["labels"]), LANE_MAX_PER_PARTITION),
                                     metric=item["metric"], projected_lanes=item["projected_lanes"]))
    named = set(p["metric"] for p in problems)
    for violation in violations:
        message = str(violation.get("message") or "")
        if "LANE_MAX_PER_PARTITION" in message or "lanes per partition" in message:
            if not any(("'%s'" % metric) in message for metric in named):
                problems.append(_problem("lane_budget", "the cluster refused the bundle: %s: %s"
                                         % (violation.get("path") or "(bundle)", message)))
        else:
            problems.append(_problem("bundle_invalid", "the cluster refused the bundle: %s: %s"
                                     % (violation.get("path") or "(bundle)", message)))
    return problems


# --------------------------------------------------------------------------- retention


def retention_check(config, queries, window_start_ns=None, now_ns=None, margin_ms=86400000):
    """Does ``compacted_retention_ms`` keep what the new policy needs?

    Needed: the look-back to ``window_start_ns`` (the oldest history to backfill) and the
    longest query range, plus ``margin_ms`` (the backfilled panes must outlive the run).
    """
    now_ns = now_ns if now_ns is not None else time.time_ns()
    longest = max([int(q.get("range_ms") or 0) for q in queries] or [0])
    lookback_ms = max(0, (now_ns - int(window_start_ns)) // _MS) if window_start_ns is not None else 0
    required = max(longest, lookback_ms) + int(margin_ms)
    current = (config or {}).get("compacted_retention_ms")
    result = {"required_compacted_retention_ms": required, "compacted_retention_ms": current,
              "raw_retention_ms": (config or {}).get("raw_retention_ms"), "longest_range_ms": longest,
              "lookback_ms": lookback_ms, "margin_ms": int(margin_ms)}
    result["ok"] = current is None or int(current) >= required
    return result


def retention_problems(retention):
    """The retention finding as a problem (or none)."""
    if retention["ok"]:
        return []
    return [_problem("retention", "compacted_retention_ms is %s but the new policy needs at least %s (look-back %s ms, "
                     "longest query range %s ms, margin %s ms): raise compacted_retention_ms in the cluster's "
                     "baseline config (and the storage behind it) before the deployment, or the backfilled panes "
                     "expire at the next compaction"
                     % (retention["compacted_retention_ms"], retention["required_compacted_retention_ms"],
                        retention["lookback_ms"], retention["longest_range_ms"], retention["margin_ms"]),
                     required_compacted_retention_ms=retention["required_compacted_retention_ms"])]


# --------------------------------------------------------------------------- WAL replay coverage


def wal_coverage(state):
    """Per partition, what a WAL replay from the latest full checkpoint rebuilds.

    ``rebuilt_after_index``: the checkpoint's index; entries at or before it (``not_rebuilt``)
    are not re-applied, so an ``upgrade: false`` metric cannot hold them.
    """
    coverage = {}
    for entry in (state or {}).get("partitions") or []:
        if not isinstance(entry, dict) or entry.get("part_id") is None:
            continue
        checkpoint = entry.get("checkpoint") or {}
        full_index = int(checkpoint.get("full_index") or 0)
        coverage[str(entry["part_id"])] = {"rebuilt_after_index": full_index, "not_rebuilt": full_index,
                                           "commit_index": entry.get("commit_index"),
                                           "wal_first_index": entry.get("wal_first_index")}
    return coverage


# --------------------------------------------------------------------------- the override of the extended replay


def override_plan(queries, history_metrics, lookback_ms, min_lateness_ms=3600000, min_correction_ms=7200000,
                  margin_ms=3600000):
    """The L and C override that keeps the look-back window mutable, for the affected metrics only.

    Affected: the new bundle's metrics whose source metric the history carries (all of them when
    the history was not scanned). A pane is mutable while its end is after ``WM - C`` with
    ``WM <= newest event - L``, so ``L = C = look-back + margin`` keeps the whole window mutable
    however far the live traffic runs ahead; each at least its minimum. Returns ``(metrics, settings)``.
    """
    affected = [q.get("metric") for q in queries
                if history_metrics is None or q.get("source_metric") is None or q.get("source_metric") in history_metrics]
    widened = int(lookback_ms) + int(margin_ms)
    knobs = {"lateness_allowance_ms": max(int(min_lateness_ms), widened),
             "correction_horizon_ms": max(int(min_correction_ms), widened)}
    settings = {"metrics": dict((metric, dict(knobs)) for metric in affected)} if affected else {}
    return affected, settings


# --------------------------------------------------------------------------- everything


def _problem(check, message, **extra):
    item = {"check": check, "message": message}
    item.update(extra)
    return item


def preflight(client, bundle, source=None, part_ids=None, scan_limit=DEFAULT_SCAN_LIMIT, window_start_ns=None,
              retention_margin_ms=86400000, open_source=None, now_ns=None):
    """Run every check; return the module result (``ok``, ``problems`` and the evidence of each check).

    ``source`` is the historic source spec (None skips the attribute check, which is then a
    problem: the check cannot be skipped silently); ``open_source`` opens it (the replay
    engine's ``open_source``; injected so the unit tests use a fake).
    """
    bundle = _definitions.json_ready(bundle)
    result = {"changed": False, "bundle_name": _definitions.bundle_name(bundle), "problems": [], "warnings_from_cluster": []}
    problems = result["problems"]
    try:
        report = _definitions.validate_bundle(client, bundle)
        violations = []
    except _definitions.ControlPlaneError as err:
        report = err.details.get("report") or {}
        violations = err.details.get("violations") or []
    result["bundle_id"] = report.get("bundle_id") or _definitions.expected_bundle_id(bundle)
    result["report"] = report
    result["warnings_from_cluster"] = list(report.get("warnings") or [])
    queries = list(report.get("compiled_queries") or [])
    definitions = _definitions.get_definitions(client)
    active_id = _definitions.active_bundle_id(definitions)
    active_entry = _definitions.find_bundle(definitions, active_id) if active_id else None
    active_queries = active_entry.get("compiled_queries") if active_entry else []
    result["active_bundle_id"] = active_id
    result["already_active"] = active_id == result["bundle_id"]
    config = (client.get_json("config") or {}).get("config") or {}

    # An active bundle has nothing left to upgrade (a rerun after the activation).
    result["replay_metrics"] = [] if result["already_active"] else replay_metrics(queries, active_queries)
    result["upgrade_false_metrics"] = [m["metric"] for m in result["replay_metrics"] if m["reason"] == "upgrade_false"]
    result["new_metrics"] = [m["metric"] for m in result["replay_metrics"] if m["reason"] == "new_metric"]
    result["needs_wal_replay"] = bool(result["upgrade_false_metrics"])

    domains = _declared_lane_domains(bundle)
    result["lane_projections"] = lane_projection(queries, domains, config.get("lane_domains"))
    problems.extend(lane_problems(result["lane_projections"], violations))

    if source is None:
        problems.append(_problem("attributes", "no historic source given: the attributes the new queries read cannot "
                                 "be checked against the history; name the source (policy_preflight_source)"))
        result["history"] = None
    else:
        handle = open_source(source)
        try:
            result["history"] = scan_history(handle, part_ids, scan_limit)
        finally:
            handle.close()
        missing, unchecked = missing_attributes(queries, result["history"]["metrics"])
        result["missing_attributes"] = missing
        result["unchecked_metrics"] = unchecked
        for metric in sorted(missing):
            problems.append(_problem("attributes", "metric %s reads %s, which the history does not provide (%d events "
                                     "scanned%s): add the attribute to the archive (schema migration, §18.2) or "
                                     "drop it from the query" % (metric, ", ".join(missing[metric]),
                                                                 result["history"]["events_scanned"],
                                                                 "" if result["history"]["complete"] else ", a sample"),
                                     metric=metric, missing=missing[metric]))

    result["retention"] = retention_check(config, queries, window_start_ns, now_ns, retention_margin_ms)
    problems.extend(retention_problems(result["retention"]))
    result["wal_coverage"] = wal_coverage(client.get_json("state"))
    history_metrics = (result.get("history") or {}).get("metrics")
    result["affected_metrics"], result["override_settings"] = override_plan(
        queries, history_metrics, result["retention"]["lookback_ms"])
    result["ok"] = not problems
    return result


def _declared_lane_domains(bundle):
    header = bundle.get("bundle") if isinstance(bundle.get("bundle"), dict) else {}
    domains = {}
    for label, spec in (header.get("lane_domains") or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("max_per_partition"), int):
            domains[str(label)] = spec["max_per_partition"]
    return domains


def summary_lines(result):
    """The preflight as lines a person reads in the Ansible output."""
    lines = ["bundle %s (active: %s)" % (result.get("bundle_id"), result.get("active_bundle_id") or "none")]
    for item in result.get("replay_metrics") or []:
        lines.append("metric %s: %s" % (item["metric"], "no upgrade(from,to): needs a WAL replay"
                                        if item["reason"] == "upgrade_false" else "new: starts empty"))
    for item in result.get("lane_projections") or []:
        lines.append("lanes %s: %s (%s)" % (item["metric"], item["projected_lanes"], item["status"]))
    if result.get("affected_metrics"):
        knobs = (result.get("override_settings") or {}).get("metrics", {}).get(result["affected_metrics"][0])
        lines.append("override L and C of %s: %s" % (", ".join(result["affected_metrics"]), knobs))
    retention = result.get("retention") or {}
    if retention:
        lines.append("compacted_retention_ms %s, needed %s"
                     % (retention.get("compacted_retention_ms"), retention.get("required_compacted_retention_ms")))
    for problem in result.get("problems") or []:
        lines.append("PROBLEM %s: %s" % (problem["check"], problem["message"]))
    return lines
