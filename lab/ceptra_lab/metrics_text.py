"""Prometheus text exposition of the lab's state.

`spec` dialect: the contract's names with the `part_id` label. `reference` dialect: the
reference implementation's spellings a tolerant reader must accept: `partition_id` label,
`*_seconds` names for lags and durations, `ceptra_partition_ready_ratio` for the ratio.
"""
from __future__ import annotations


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    """Collects samples per family so each family is one contiguous group (the format requires it)."""

    def __init__(self):
        self.families: dict[str, list[str]] = {}

    def sample(self, name: str, kind: str, helptext: str, value, labels: dict | None = None) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = [f"# HELP {name} {helptext}", f"# TYPE {name} {kind}"]
        family.append(f"{name}{_labels(labels or {})} {_number(value)}")

    @property
    def lines(self) -> list[str]:
        return [line for family in self.families.values() for line in family]


def render(cluster, dialect: str = "spec") -> str:
    """The /metrics body for the cluster."""
    reference = dialect == "reference"
    part_label = "partition_id" if reference else "part_id"
    out = _Writer()
    readiness = cluster.readiness_document()
    for part_id in cluster.part_ids:
        partition = cluster.partitions[part_id]
        manifest = cluster.manifest(part_id)
        ready = readiness["partitions"][part_id]
        label = {part_label: part_id}
        apply_lag = float(partition.apply_lag_ms())
        replication_lag = float(ready["metrics"].get("replication_lag_ms", 0))
        if reference:
            out.sample("apply_lag_seconds", "gauge", "commit->apply backlog age (seconds)", apply_lag / 1000.0, label)
            out.sample("replication_lag_seconds", "gauge", "follower lag (seconds)", replication_lag / 1000.0, label)
        else:
            out.sample("apply_lag_ms", "gauge", "commit->apply backlog age", apply_lag, label)
            out.sample("replication_lag_ms", "gauge", "follower lag", replication_lag, label)
        out.sample("ceptra_definition_warmup_pending", "gauge", "1 while the newest bundle's shadow is not Ready",
                   cluster.shadow_pending(part_id), label)
        horizons = manifest.get("finalized_horizon_ts_ns") or {}
        out.sample("ceptra_finalized_horizon_stall", "gauge", "1 while the finalized horizon is stuck",
                   partition.finalized_horizon_stall(), label)
        for metric, value in sorted(horizons.items()):
            out.sample("finalized_horizon_ts_ns", "gauge", "per-metric finalized horizon (event time)", int(value),
                       {part_label: part_id, "metric": metric})
        out.sample("ceptra_partition_ready", "gauge", "1 when the partition is ready", ready["ready"], label)
        dedup = manifest.get("dedup") or {}
        out.sample("ceptra_dedup_occupancy", "gauge", "dedup table entries", dedup.get("occupancy", 0), label)
        out.sample("ceptra_dedup_capacity_exhausted_total", "counter", "appends refused because the dedup table was full",
                   partition.dedup_capacity_exhausted_total, label)
        for (metric, reason), count in sorted(partition.late_total.items()):
            out.sample("ap_late_events_total", "counter", "events dropped as late", count,
                       {part_label: part_id, "metric": metric, "reason": reason})
        for metric, value in sorted(partition.watermarks_ns().items()):
            out.sample("ap_watermark_ts_ms", "gauge", "event-time watermark", value // 1_000_000,
                       {part_label: part_id, "metric": metric})
        out.sample("queue_depth", "gauge", "commit->apply queue", partition.queue_depth(), {part_label: part_id, "type": "commit_apply"})
        out.sample("ceptra_applied_events_total", "counter", "entries applied (skipped last-event-wins entries excluded)",
                   partition.applied_total, label)
        out.sample("ceptra_appended_events_total", "counter", "entries appended (committed)", partition.appended_total, label)
        out.sample("ceptra_commit_index", "gauge", "last committed Raft index", int(manifest.get("commit_index", 0)), label)
        out.sample("ceptra_retention_expired_panes_total", "counter",
                   "panes dropped by compaction past compacted_retention_ms", partition.store.expired_panes, label)
    if reference:
        out.sample("compaction_duration_seconds", "gauge", "last compaction run", cluster.compaction["duration_ms"] / 1000.0)
        out.sample("ceptra_partition_ready_ratio", "gauge", "share of ready partitions", readiness["partition_ready_ratio"])
    else:
        out.sample("compaction_duration_ms", "gauge", "last compaction run", cluster.compaction["duration_ms"])
        out.sample("ceptra_ready_partitions_ratio", "gauge", "share of ready partitions", readiness["partition_ready_ratio"])
    out.sample("ceptra_compaction_runs_total", "counter", "compaction runs", cluster.compaction["runs"])
    out.sample("config_version_current", "gauge", "current config version", cluster.config.version)
    return "\n".join(out.lines) + "\n"

