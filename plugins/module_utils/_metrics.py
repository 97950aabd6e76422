# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: Prometheus text reader and THE metric-name alias table.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal tolerant reader of ``/metrics`` (not a public API).

This file is the only place that knows metric spellings. Every reader resolves names
through :data:`METRIC_ALIASES`: canonical name -> accepted spellings. Spellings ending in
``_seconds`` are the deprecated read-only aliases (value = ms / 1000) and are converted to
milliseconds. The label ``partition_id`` is read as ``part_id``.
"""

from __future__ import annotations

import math
import re

from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import LABEL_KEYS

# canonical name -> (spellings in milliseconds or unit-less, legacy spellings in seconds).
# The canonical name itself is always accepted. Sources: the contract's table (section 2)
# and shared/reference/telemetry-catalog.json.
_ALIAS_SOURCE = {
    # the throttle and readiness signals
    "apply_lag_ms": (["ceptra_apply_lag_ms", "clustor_apply_lag_ms"],
                     ["apply_lag_seconds", "ceptra_apply_lag_seconds", "clustor_apply_lag_seconds"]),
    "replication_lag_ms": (["ceptra_replication_lag_ms", "clustor_replication_lag_ms"],
                           ["replication_lag_seconds", "ceptra_replication_lag_seconds",
                            "clustor_replication_lag_seconds"]),
    "ceptra_definition_warmup_pending": (["definition_warmup_pending"], []),
    "ceptra_finalized_horizon_stall": (["finalized_horizon_stall"], []),
    "finalized_horizon_ts_ns": (["ceptra_finalized_horizon_ts_ns"], []),
    "compaction_duration_ms": (["ceptra_compaction_duration_ms"],
                               ["compaction_duration_seconds", "ceptra_compaction_duration_seconds"]),
    "ceptra_compaction_runs_total": (["compaction_runs_total"], []),
    "ceptra_partition_ready": (["partition_ready"], []),
    "ceptra_ready_partitions_ratio": (["ceptra_partition_ready_ratio", "ready_partitions_ratio",
                                       "partition_ready_ratio"], []),
    "ceptra_dedup_occupancy": (["dedup_occupancy"], []),
    "ceptra_dedup_capacity_exhausted_total": (["dedup_capacity_exhausted_total"], []),
    "ap_late_events_total": (["ceptra_ap_late_events_total"], []),
    "ap_watermark_ts_ms": (["ceptra_ap_watermark_ts_ms"], ["ap_watermark_ts_seconds", "ceptra_ap_watermark_ts_seconds"]),
    "queue_depth": (["ceptra_queue_depth"], []),
    "config_version_current": (["ceptra_config_version_current"], []),
    # the rest of the telemetry catalog
    "ceptra_ap_event_lateness_ms": (["ap_event_lateness_ms"], ["ceptra_ap_event_lateness_seconds",
                                                               "ap_event_lateness_seconds"]),
    "ceptra_wal_dirty_epoch_age_ms": (["wal_dirty_epoch_age_ms"], ["ceptra_wal_dirty_epoch_age_seconds",
                                                                   "wal_dirty_epoch_age_seconds"]),
    "ceptra_wal_fsync_latency_ms": (["wal_fsync_latency_ms"], ["ceptra_wal_fsync_latency_seconds",
                                                               "wal_fsync_latency_seconds"]),
    "ceptra_ap_apply_latency_ms": (["ap_apply_latency_ms"], ["ceptra_ap_apply_latency_seconds",
                                                             "ap_apply_latency_seconds"]),
    "ceptra_cp_reconcile_duration_ms": (["cp_reconcile_duration_ms"], ["ceptra_cp_reconcile_duration_seconds",
                                                                       "cp_reconcile_duration_seconds"]),
    "ceptra_security_cert_expiry_ms": (["security_cert_expiry_ms"], ["ceptra_security_cert_expiry_seconds",
                                                                     "security_cert_expiry_seconds"]),
    "ceptra_security_kms_latency_ms": (["security_kms_latency_ms"], ["ceptra_security_kms_latency_seconds",
                                                                     "security_kms_latency_seconds"]),
    "leader_credit_window_hint_events": (["ceptra_leader_credit_window_hint_events"], []),
    "leader_credit_window_hint_bytes": (["ceptra_leader_credit_window_hint_bytes"], []),
    "leader_credit_window_hint_violation_total": (["ceptra_leader_credit_window_hint_violation_total"], []),
    "ap_emit_queue_utilization": (["ceptra_ap_emit_queue_utilization"], []),
    "wal_durability_fence_active": (["ceptra_wal_durability_fence_active"], []),
    "clustor_feed_staleness_ms": ([], ["clustor_feed_staleness_seconds"]),
    "clustor_feed_latency_ms": ([], ["clustor_feed_latency_seconds"]),
    "clustor_system_logs_total": ([], []),
}

# THE alias table: canonical name -> every accepted spelling (canonical first, ms before seconds).
METRIC_ALIASES = {
    canonical: tuple([canonical] + list(ms_names) + list(seconds_names))
    for canonical, (ms_names, seconds_names) in _ALIAS_SOURCE.items()
}

# Label spellings: accepted name -> canonical name (the partition label's spellings are _partitions').
LABEL_ALIASES = {name: "part_id" for name in LABEL_KEYS if name != "part_id"}

# spelling -> (canonical, factor to milliseconds, preference rank: lower wins when both are exposed)
_SPELLINGS = {}
for _canonical, (_ms_names, _seconds_names) in _ALIAS_SOURCE.items():
    for _rank, _name in enumerate([_canonical] + list(_ms_names)):
        _SPELLINGS[_name] = (_canonical, 1.0, _rank)
    for _rank, _name in enumerate(_seconds_names):
        _SPELLINGS[_name] = (_canonical, 1000.0, 100 + _rank)

# Summary/histogram parts of a known base name keep the base's alias (``_sum`` scales, ``_count`` does not).
_SUFFIX_SCALES = {"_sum": True, "_count": False}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s+(\S+)(?:\s+(\S+))?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def resolve_name(name: str):
    """Return ``(canonical, factor)`` for a metric spelling; unknown names map to themselves with factor 1."""
    known = _SPELLINGS.get(name)
    if known is not None:
        return known[0], known[1]
    for suffix, scales in _SUFFIX_SCALES.items():
        if name.endswith(suffix):
            base = _SPELLINGS.get(name[: -len(suffix)])
            if base is not None:
                return base[0] + suffix, base[1] if scales else 1.0
    return name, 1.0


def canonical_name(name: str) -> str:
    """The canonical name of a metric spelling (unknown names are returned unchanged)."""
    return resolve_name(name)[0]


def _rank(name):
    known = _SPELLINGS.get(name)
    if known is not None:
        return known[2]
    for suffix in _SUFFIX_SCALES:
        if name.endswith(suffix) and name[: -len(suffix)] in _SPELLINGS:
            return _SPELLINGS[name[: -len(suffix)]][2]
    return 0


def _unescape(value):
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), "\\" + m.group(1)), value)


def _parse_value(text):
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)  # float() also reads "NaN"


def parse_prometheus(text: str):
    """Parse Prometheus text exposition into ``[(name, labels, value)]`` exactly as exposed.

    Comments, blank lines and malformed lines are skipped (a reader must never crash on
    an exposition it does not fully understand).
    """
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, label_text, value_text = match.group(1), match.group(2), match.group(3)
        try:
            value = _parse_value(value_text)
        except ValueError:
            continue
        labels = {}
        if label_text:
            position = 0
            label_text = label_text.strip()
            while position < len(label_text):
                label = _LABEL.match(label_text, position)
                if label is None:
                    labels = None
                    break
                labels[label.group(1)] = _unescape(label.group(2))
                position = label.end()
            if labels is None:
                continue
        samples.append((name, labels, value))
    return samples


def normalize_labels(labels: dict) -> dict:
    """Apply the label aliases (``partition_id`` -> ``part_id``)."""
    return {LABEL_ALIASES.get(key, key): value for key, value in labels.items()}


def read_series(text: str, names=None):
    """Parse an exposition into canonical samples ``[(canonical, labels, value_in_ms_or_unit)]``.

    ``names`` (any spellings) restricts the result; when a series is exposed under several
    spellings (``_ms`` and a legacy ``_seconds``) the preferred spelling wins.
    """
    if isinstance(names, str):
        names = [names]
    wanted = None if names is None else {canonical_name(name) for name in names}
    chosen = {}
    for name, labels, value in parse_prometheus(text):
        canonical, factor = resolve_name(name)
        if wanted is not None and canonical not in wanted:
            continue
        labels = normalize_labels(labels)
        key = (canonical, tuple(sorted(labels.items())))
        rank = _rank(name)
        previous = chosen.get(key)
        if previous is None or rank < previous[0]:
            chosen[key] = (rank, canonical, labels, value * factor)
    return [(canonical, labels, value) for _rank_, canonical, labels, value in chosen.values()]


def series_key(labels: dict) -> str:
    """The key of a series in :func:`read_metrics`: the part_id alone, or "" without labels,
    or ``part_id=..,k=v,..`` (part_id first, then sorted) when more labels are present."""
    others = sorted((k, v) for k, v in labels.items() if k != "part_id")
    if not others:
        return labels.get("part_id", "")
    pairs = ([("part_id", labels["part_id"])] if "part_id" in labels else []) + others
    return ",".join("%s=%s" % pair for pair in pairs)


def read_metrics(text: str, names=None) -> dict:
    """Read an exposition into ``{canonical: {key: value}}``.

    ``key`` is the ``part_id`` (``""`` for a cluster-wide series) for series labelled only by
    partition; series with more labels are keyed ``part_id=3,metric=m,reason=FINALIZED``
    (see :func:`series_key`). Values of legacy ``_seconds`` spellings are converted to ms.
    """
    result = {}
    for canonical, labels, value in read_series(text, names):
        result.setdefault(canonical, {})[series_key(labels)] = value
    return result


def per_partition(text_or_samples, name: str, **label_filter) -> dict:
    """``{part_id: value}`` for one metric (any spelling), keeping series whose labels match ``label_filter``.

    Series without a part_id are skipped; several matching series of one partition are summed.
    """
    samples = read_series(text_or_samples, [name]) if isinstance(text_or_samples, str) else text_or_samples
    canonical = canonical_name(name)
    out = {}
    for sample_name, labels, value in samples:
        if sample_name != canonical or "part_id" not in labels:
            continue
        if any(labels.get(key) != str(expected) for key, expected in label_filter.items()):
            continue
        out[labels["part_id"]] = out.get(labels["part_id"], 0.0) + value
    return out
