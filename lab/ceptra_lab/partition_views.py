"""What a partition shows: stats for /metrics, readiness, its /v1/state manifest, the metrics
snapshot and the derived events. ``PartitionViews`` is a part of ``Partition`` (partition.py
inherits it) kept in its own file; it only reads the partition's state."""
from __future__ import annotations

from .aggregates import digest_of

_MS = 1_000_000


class PartitionViews:
    """Read-only views of a Partition."""

    @property
    def late_total(self) -> dict[tuple[str, str], int]:
        """{(metric, reason): count}: FINALIZED drops from the aggregate state plus FUTURE_SKEW refusals."""
        merged = dict(self.store.late)
        for key, count in self._rejected_late.items():
            merged[key] = merged.get(key, 0) + count
        return merged

    def watermarks_ns(self) -> dict[str, int]:
        """{metric: WM_e in ns}."""
        return self.store.watermarks()

    def stats(self) -> dict:
        """Counters and gauges the server exports on /metrics (one flat, JSON-able dict)."""
        now = self.now_ns()
        return {
            "appended_total": self.appended_total, "applied_total": self.applied_total,
            "skipped_total": self.skipped_total, "duplicates_total": self.duplicates_total,
            "dedup_capacity_exhausted_total": self.dedup_capacity_exhausted_total,
            "retry_expired_total": self.retry_expired_total,
            "dedup_occupancy": len(self._dedup), "dedup_capacity": self._dedup_capacity,
            "compaction_runs_total": self.compaction_runs_total,
            "compaction_duration_ms": self.last_compaction_duration_ms,
            "retention_expired_panes_total": self.store.expired_panes,
            "wal_replays_total": self.wal_replays_total,
            "queue_depth": self.queue_depth(), "apply_lag_ms": self._lag_ms(now),
            "replication_lag_ms": self.follower_lag_ms(now),
            "checkpoint_age_ms": self.checkpoint_age_ms(),
            "finalized_horizon_stall": self.finalized_horizon_stall(),
            "definition_warmup_pending": self.definition_warmup_pending(),
            "watermark_ts_ms": {m: wm // _MS for m, wm in self.store.watermarks().items()},
            "finalized_horizon_ts_ns": self.store.horizons(),
            "late_total": [{"metric": m, "reason": r, "count": c}
                           for (m, r), c in sorted(self.late_total.items())],
        }

    def readiness(self) -> dict:
        """{"ready", "reasons", "metrics": {"apply_lag_ms", "replication_lag_ms"}}."""
        self._refresh_config()
        now = self.now_ns()
        lag = self._lag_ms(now)
        replication_lag = self.follower_lag_ms(now)
        reasons = []
        if self.ingress_gate() == "warmup":
            reasons.append("warmup")
        if lag > self._ready_apply_lag_ms:
            reasons.append("apply_lag")
        if replication_lag > self._ready_replication_lag_ms:
            reasons.append("replication_lag")
        if now - self._last_checkpoint_ns > 2 * self._checkpoint_interval_ns:
            reasons.append("checkpoint_age")
        if self.definition_warmup_pending() or self.excluded_from:
            reasons.append("definition_warmup_pending")
        if now < self.fence_until_ns:
            reasons.append("durability_fence")
        if self.finalized_horizon_stall():
            reasons.append("watermark_stall")
        document = {"ready": not reasons, "reasons": reasons,
                    "metrics": {"apply_lag_ms": round(lag, 3), "replication_lag_ms": round(replication_lag, 3)}}
        if self.excluded_from:
            document["excluded_from_activation"] = self.excluded_from
        return document

    def manifest(self) -> dict:
        """This partition's element of GET /v1/state "partitions"."""
        self._refresh_config()
        bundle = self.active_bundle
        return {
            "part_id": self.part_id, "leader": self.leader, "routing_epoch": self.routing_epoch,
            "commit_index": self.commit_index, "applied_index": self.applied_index,
            "wal_first_index": self._wal_first_index, "wal_last_index": self.commit_index,
            "checkpoint": self.checkpoint_info(),
            "def_version": getattr(bundle, "def_version", 0) if bundle is not None else 0,
            "policy_version": getattr(bundle, "policy_version", 0) if bundle is not None else 0,
            "warmup": self.ingress_gate() == "warmup", "ingress_gate": self.ingress_gate(),
            "finalized_horizon_index": self.finalized_horizon_index(),
            "finalized_horizon_ts_ns": self.store.horizons(),
            "dedup": {"capacity": self._dedup_capacity, "occupancy": len(self._dedup)},
            "replay_sessions": {s: {"last_seq": seq} for s, seq in sorted(self.replay_sessions.items())},
            "unavailable_windows": [dict(w) for w in self.unavailable_windows],
        }

    def metrics_snapshot(self) -> dict:
        """Deterministic dump of the aggregate state plus its digest (metrics only)."""
        metrics = self.store.export()
        return {"part_id": self.part_id, "applied_index": self.applied_index, "metrics": metrics,
                "late": self.store.export_late(), "digest": digest_of(metrics)}

    def derived_events(self, since: int = 0) -> list[dict]:
        """Derived events emitted for entries with raft_log_index > since, in log order."""
        return sorted((d for d in self.derived.values() if d["raft_log_index"] > since),
                      key=lambda d: (d["raft_log_index"], d["rule_id"], d["channel"]))

