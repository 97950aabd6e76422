"""Knob lookup over one cluster config blob, as the partition engine reads it.

``config_history`` owns the versions, merge patches and validation; on every change the
cluster hands the new blob to ``KnobView.update``. The engine reads knobs through ``knob()``
(metric > partition > top level > contract default) and caches what it derives from them,
keyed by ``KnobView.generation`` so a cache is rebuilt exactly once per change.
"""
from __future__ import annotations

import copy

# The contract's knob layout (ceptra-api.md section 3) with the spec defaults.
DEFAULT_CONFIG: dict = {
    "lateness_allowance_ms": 2000,
    "watermark_guard_ms": 200,
    "correction_horizon_ms": 3600000,
    "max_future_skew_ms": 5000,
    "pane_size_ms": 250,
    "raw_retention_ms": 86400000,
    "compacted_retention_ms": 31536000000,
    "client_retry_window_s": 1800,
    "dedup_capacity_per_partition": 1000000,
    "checkpoint_full_interval_ms": 30000,
    "checkpoint_retained_fulls": 2,
    "partition_flow": {"max_events": 2048, "max_bytes": 16777216, "max_event_bytes": 1048576},
    "readiness": {"healthy_partition_ratio": 0.99, "apply_lag_ms": 200, "replication_lag_ms": 250},
    "metrics": {},
    "partitions": {},
    "lane_domains": {},
    "annotations": {},
}

_MISSING = object()


class KnobView:
    """The current config blob plus precedence-aware lookups.

    ``version`` is the config store's version (or a local counter when none is given);
    ``generation`` increments on every ``update`` and is what engine caches compare.
    """

    def __init__(self, config: dict | None = None, version: int = 1):
        self.config: dict = config if config is not None else copy.deepcopy(DEFAULT_CONFIG)
        self.version = version
        self.generation = 0

    def update(self, config: dict, version: int | None = None) -> None:
        """Swap in a new config blob (the server calls this after every accepted change)."""
        if not isinstance(config, dict):
            raise TypeError("config must be a JSON object (dict), got %s" % type(config).__name__)
        self.config = config
        self.version = version if version is not None else self.version + 1
        self.generation += 1

    def get(self, key: str, default=None):
        """Top-level knob, falling back to the contract default, then to ``default``."""
        value = self.config.get(key, _MISSING)
        if value is _MISSING or value is None:
            value = DEFAULT_CONFIG.get(key, default)
        return value

    def section(self, name: str) -> dict:
        """A nested object knob (``partition_flow``, ``readiness``) merged over its defaults."""
        merged = dict(DEFAULT_CONFIG.get(name) or {})
        value = self.config.get(name)
        if isinstance(value, dict):
            merged.update({k: v for k, v in value.items() if v is not None})
        return merged

    def knob(self, part_id: str | None, metric: str | None, key: str, default=None):
        """Resolve ``key`` as metrics.<metric>.<key> > partitions.<part_id>.<key> > top level.

        Missing levels (or ``None`` for part_id/metric) are skipped; the contract default is
        the last resort, then ``default``.
        """
        if metric is not None:
            per_metric = self.config.get("metrics")
            if isinstance(per_metric, dict):
                entry = per_metric.get(metric)
                if isinstance(entry, dict) and entry.get(key) is not None:
                    return entry[key]
        if part_id is not None:
            per_part = self.config.get("partitions")
            if isinstance(per_part, dict):
                entry = per_part.get(str(part_id))
                if isinstance(entry, dict) and entry.get(key) is not None:
                    return entry[key]
        return self.get(key, default)

    def ingress_gate(self, part_id: str) -> str | None:
        """The gate an operator set for this partition (``open``/``warmup``), or None."""
        per_part = self.config.get("partitions")
        if isinstance(per_part, dict):
            entry = per_part.get(str(part_id))
            if isinstance(entry, dict) and entry.get("ingress_gate") in ("open", "warmup"):
                return entry["ingress_gate"]
        return None
