# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the partial-recovery plan (missing window, history coverage, derived-event checks).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal helpers of ceptra.backfill for scenario 2 of the operations guide (not a public API).

- ``missing_window``: the affected partitions and the missing window, from the outage spans
  ``/v1/state`` reports per partition (``unavailable_windows``) or from the operator;
- ``HistoryTally`` / ``summarize_history``: what the historic source holds for a window,
  per partition (events, annotation coverage, attributes, source metrics);
- ``impacted_metrics``: the bundle metrics fed by the source metrics of the window;
- ``lateness_override``: the L and C override settings for those metrics only;
- ``derived_event_duplicates``: decisions emitted twice under different ids.
"""

from __future__ import annotations

import math

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

NS_PER_MS = 1_000_000
HOUR_MS = 3_600_000
REPLAY_FLAG = "REPLAY"


class RecoveryPlanError(CeptraError):
    """A window, history or plan input that cannot be used; the message says what to fix."""

    context = ""


# --------------------------------------------------------------------------- missing window


def _windows_of(entry):
    spans = []
    for span in entry.get("unavailable_windows") or []:
        if not isinstance(span, dict):
            continue
        start, end = span.get("start_ts_ns"), span.get("end_ts_ns")
        if isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool) and end > start:
            spans.append({"start_ts_ns": start, "end_ts_ns": end})
    return sorted(spans, key=lambda s: (s["start_ts_ns"], s["end_ts_ns"]))


def missing_window(partitions, now_ns, wanted=None, start_ns=None, end_ns=None, since_ns=None, margin_ms=0):
    """The partitions and the window to recover.

    ``partitions`` are the manifests of ``/v1/state`` (either shape). Outage spans ending
    before ``since_ns`` are ignored (an earlier, already recovered incident). With
    ``start_ns``/``end_ns`` the operator names the window; otherwise it is the union of the
    spans, widened by ``margin_ms`` on both sides (events stamped just before a fence began
    may have reached the cluster after it). ``wanted`` limits the partitions.

    Returns ``{partitions, window_start_ns, window_end_ns, windows, in_progress, source,
    found}``; ``in_progress`` lists partitions whose outage has not ended at ``now_ns``.
    """
    manifests = dict(_partitions.sorted_items(partitions))
    known = list(manifests)
    if wanted:
        unknown = [p for p in wanted if str(p) not in manifests]
        if unknown:
            raise RecoveryPlanError("unknown partition id(s) %s; the cluster has partitions %s"
                                    % (", ".join(map(str, unknown)), ", ".join(known) or "none"))
    if (start_ns is None) != (end_ns is None):
        raise RecoveryPlanError("give both window_start_ns and window_end_ns, or neither (then the window "
                                "comes from the outage spans in /v1/state)")
    if start_ns is not None and start_ns >= end_ns:
        raise RecoveryPlanError("window_start_ns (%d) must be below window_end_ns (%d)" % (start_ns, end_ns))
    windows = {}
    in_progress = []
    for part_id, entry in manifests.items():
        spans = [s for s in _windows_of(entry if isinstance(entry, dict) else {})
                 if since_ns is None or s["end_ts_ns"] > since_ns]
        if start_ns is not None:
            spans = [s for s in spans if s["start_ts_ns"] < end_ns and s["end_ts_ns"] > start_ns]
        if spans:
            windows[part_id] = spans
            if any(s["end_ts_ns"] > now_ns for s in spans):
                in_progress.append(part_id)
    if wanted:
        chosen = _partitions.sort_ids(str(p) for p in wanted)
    else:
        chosen = [p for p in known if p in windows]
    windows = {p: windows[p] for p in chosen if p in windows}
    in_progress = [p for p in in_progress if p in chosen]
    if start_ns is not None:
        source = "operator"
        window = (start_ns, end_ns)
    elif windows:
        source = "unavailable_windows"
        margin = int(margin_ms) * NS_PER_MS
        window = (min(s["start_ts_ns"] for spans in windows.values() for s in spans) - margin,
                  max(s["end_ts_ns"] for spans in windows.values() for s in spans) + margin)
    else:
        source = "none"
        window = (None, None)
    return {"partitions": chosen if (windows or start_ns is not None) else [],
            "window_start_ns": window[0], "window_end_ns": window[1], "windows": windows,
            "in_progress": in_progress, "source": source, "found": bool(windows) or start_ns is not None}


# --------------------------------------------------------------------------- history coverage


class HistoryTally(object):
    """Counts for one partition's events in a window: total, annotated, attribute presence."""

    def __init__(self, annotation_attributes, annotation_flags, required_attributes):
        self.annotation_attributes = list(annotation_attributes)
        self.annotation_flags = set(annotation_flags)
        self.required_attributes = list(required_attributes)
        self.events = 0
        self.annotated = 0
        self.copies = 0
        self.bad_rows = 0
        self.missing = {name: 0 for name in self.required_attributes}
        self.source_metrics = set()
        self.min_ts_ns = None
        self.max_ts_ns = None

    def add(self, event, error=None, duplicate=False):
        """Count one row of the source (``event`` is the append message; None for a bad row)."""
        if duplicate:
            self.copies += 1
            return
        if event is None or error:
            self.bad_rows += 1
            return
        self.events += 1
        payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
        flags = set(event.get("flags") or ()) - {REPLAY_FLAG}
        if any(payload.get(name) not in (None, "") for name in self.annotation_attributes) or \
                flags & self.annotation_flags:
            self.annotated += 1
        for name in self.required_attributes:
            if payload.get(name) in (None, ""):
                self.missing[name] += 1
        metric = payload.get("metric")
        if isinstance(metric, str) and metric:
            self.source_metrics.add(metric)
        ts_ns = event.get("ts_ns")
        if isinstance(ts_ns, int):
            self.min_ts_ns = ts_ns if self.min_ts_ns is None else min(self.min_ts_ns, ts_ns)
            self.max_ts_ns = ts_ns if self.max_ts_ns is None else max(self.max_ts_ns, ts_ns)

    def result(self):
        """The partition's summary; coverage is 1.0 for an empty window (nothing to annotate)."""
        coverage = (float(self.annotated) / self.events) if self.events else 1.0
        return {"events": self.events, "annotated": self.annotated, "coverage": round(coverage, 6),
                "stored_copies": self.copies, "bad_rows": self.bad_rows,
                "missing_attributes": {k: v for k, v in sorted(self.missing.items()) if v},
                "source_metrics": sorted(self.source_metrics),
                "min_ts_ns": self.min_ts_ns, "max_ts_ns": self.max_ts_ns}


def summarize_history(source, part_ids, annotation_attributes=(), annotation_flags=(), required_attributes=(),
                      page=2000):
    """Read every row of ``part_ids`` from an open historic source (already limited to the
    window) and return ``{"partitions": {part_id: summary}, "events", "annotated", "coverage",
    "min_coverage", "source_metrics", "missing_attributes"}``."""
    out = {}
    for part_id in _partitions.sort_ids(part_ids):
        tally = HistoryTally(annotation_attributes, annotation_flags, required_attributes)
        after, after_seq = None, 0
        while True:
            rows = source.read(part_id, after, after_seq, page)
            if not rows:
                break
            for row in rows:
                tally.add(row.event, row.error, row.duplicate_of is not None)
            after, after_seq = rows[-1].position, rows[-1].seq
        out[part_id] = tally.result()
    events = sum(p["events"] for p in out.values())
    annotated = sum(p["annotated"] for p in out.values())
    missing = {}
    for summary in out.values():
        for name, count in summary["missing_attributes"].items():
            missing[name] = missing.get(name, 0) + count
    return {"partitions": out, "events": events, "annotated": annotated,
            "coverage": round(float(annotated) / events, 6) if events else 1.0,
            "min_coverage": min((p["coverage"] for p in out.values()), default=1.0),
            "source_metrics": sorted({m for p in out.values() for m in p["source_metrics"]}),
            "missing_attributes": dict(sorted(missing.items()))}


def impacted_metrics(queries, source_metrics):
    """Names of the bundle metrics whose queries read one of ``source_metrics`` (sorted).

    ``queries`` are the ``compiled_queries`` of the active bundle (``metric``,
    ``source_metric``); a query without ``source_metric`` cannot be matched and is skipped.
    """
    wanted = set(source_metrics or ())
    return sorted({q["metric"] for q in queries or () if isinstance(q, dict) and q.get("metric")
                   and q.get("source_metric") in wanted})


def lateness_override(metrics, window_start_ns, now_ns, min_lateness_ms, min_correction_ms, margin_ms=HOUR_MS):
    """``config_override`` settings that keep the window's panes mutable for ``metrics`` only.

    L and C become at least the window's age plus ``margin_ms``, rounded up to whole hours
    so that a resumed run computes the same values (and the override stays unchanged), and
    never below the operator's minimums.
    """
    if not metrics:
        return {}
    age_ms = max(0, (int(now_ns) - int(window_start_ns)) // NS_PER_MS) if window_start_ns is not None else 0
    needed = int(math.ceil(float(age_ms + int(margin_ms)) / HOUR_MS)) * HOUR_MS
    lateness = max(int(min_lateness_ms), needed)
    correction = max(int(min_correction_ms), needed)
    return {"metrics": {name: {"lateness_allowance_ms": lateness, "correction_horizon_ms": correction}
                        for name in sorted(metrics)}}


# --------------------------------------------------------------------------- derived events


def derived_event_duplicates(events):
    """Decisions emitted more than once under different ``derived_event_id``s.

    The same source event, rule and channel must always give the same id (it hashes the
    Raft index, so an event applied twice gives two); a repeated id is a re-emission the
    sink drops. Returns ``(by_source, repeated_ids)``: a list of ``{source_event_id,
    rule_id, channel, derived_event_ids}`` and the number of repeated ids.
    """
    ids_by_decision = {}
    seen = set()
    repeated = 0
    for event in events or ():
        if not isinstance(event, dict):
            continue
        derived_id = event.get("derived_event_id")
        if derived_id in seen:
            repeated += 1
            continue
        seen.add(derived_id)
        key = (str(event.get("source_event_id")), str(event.get("rule_id")), str(event.get("channel")))
        ids_by_decision.setdefault(key, []).append(derived_id)
    twice = [{"source_event_id": k[0], "rule_id": k[1], "channel": k[2], "derived_event_ids": sorted(map(str, v))}
             for k, v in sorted(ids_by_decision.items()) if len(v) > 1]
    return twice, repeated
