# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the one table of the cluster config's knobs and their bounds.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): which config knobs exist and what they accept.

The one place that knows the bounds of ``/v1/config`` (contract section 3):

- ``_config_rules`` checks an override against it before ``config_override`` sends anything;
- the lab (``lab/ceptra_lab/config_history.py``) enforces it on every ``PATCH /v1/config``;
  it loads this file by path, so it needs no installed collection;
- ``docs/ceptra-api.openapi.yaml`` documents it (``Config`` and ``ConfigPatch``);
  tests/unit/plugins/module_utils/test_config_bounds.py holds the document to this table.

The contract names two bounds exactly (``checkpoint_full_interval_ms`` and
``partition_flow.max_event_bytes``); the others are assumed (docs/lab.md): no negative
times or empty panes, and an upper bound on every knob so that no accepted value overflows
int64 nanosecond event times (10 years in ns is 3.2e17, far inside 9.2e18).

Standard library only and no import of the collection: the lab imports this file alone.
"""

from __future__ import annotations

MAX_DURATION_MS = 10 * 365 * 86400000          # 10 years

# Top-level integer knobs: (minimum, maximum), both inclusive.
INT_BOUNDS = {
    "lateness_allowance_ms": (0, MAX_DURATION_MS),
    "watermark_guard_ms": (0, MAX_DURATION_MS),
    "correction_horizon_ms": (0, MAX_DURATION_MS),
    "max_future_skew_ms": (0, MAX_DURATION_MS),
    "pane_size_ms": (1, 86400000),                 # at most one day
    "raw_retention_ms": (0, MAX_DURATION_MS),
    "compacted_retention_ms": (0, MAX_DURATION_MS),
    "client_retry_window_s": (1, MAX_DURATION_MS // 1000),
    "dedup_capacity_per_partition": (1, 100000000),
    "checkpoint_full_interval_ms": (15000, 300000),
    "checkpoint_retained_fulls": (1, 100),
    "fsync_cadence_ms": (0, 60000),
}
# Integer knobs inside the two nested objects.
FLOW_BOUNDS = {"max_events": (1, 1000000), "max_bytes": (1, 1 << 30), "max_event_bytes": (65536, 8388608)}
READINESS_BOUNDS = {"apply_lag_ms": (0, MAX_DURATION_MS), "replication_lag_ms": (0, MAX_DURATION_MS)}
NESTED_BOUNDS = {"partition_flow": FLOW_BOUNDS, "readiness": READINESS_BOUNDS}
# readiness.healthy_partition_ratio: a number in (0, 1] (exclusive minimum).
RATIO_KEY = "healthy_partition_ratio"
# Knobs a metric (metrics.<metric>.<key>) or a partition (partitions.<part_id>.<key>) overrides.
PER_METRIC_KEYS = ("lateness_allowance_ms", "watermark_guard_ms", "correction_horizon_ms")
PER_METRIC_BOUNDS = (0, MAX_DURATION_MS)
PER_PARTITION_KEYS = PER_METRIC_KEYS + ("ingress_gate",)
INGRESS_GATES = ("open", "warmup")
# lane_domains.<label>.max_per_partition: a label's domain above LANE_MAX_PER_PARTITION never fits.
LANE_DOMAIN_BOUNDS = (1, 64)
STRING_KEYS = ("durability_mode", "wal_path", "numa_affinity")
OBJECT_KEYS = ("partition_flow", "readiness", "metrics", "partitions", "lane_domains", "annotations")
KNOWN_TOP_LEVEL = frozenset(INT_BOUNDS) | frozenset(OBJECT_KEYS) | frozenset(STRING_KEYS)


def int_bounds(path):
    """``(minimum, maximum)`` of the integer knob at dotted ``path`` (``metrics.<m>.<key>`` and
    ``partitions.<p>.<key>`` included), or None when ``path`` is no integer knob."""
    parts = path.split(".")
    if len(parts) == 1:
        return INT_BOUNDS.get(parts[0])
    if len(parts) == 2:
        return NESTED_BOUNDS.get(parts[0], {}).get(parts[1])
    if len(parts) == 3 and parts[0] in ("metrics", "partitions") and parts[2] in PER_METRIC_KEYS:
        return PER_METRIC_BOUNDS
    if len(parts) == 3 and parts[0] == "lane_domains" and parts[2] == "max_per_partition":
        return LANE_DOMAIN_BOUNDS
    return None
