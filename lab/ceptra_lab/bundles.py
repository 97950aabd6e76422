"""Definition bundles on the lab cluster: upload, per-partition shadow warmup, activation barriers.

``BundleLifecycle`` is a part of ``Cluster`` (cluster.py inherits it) kept in its own file;
its methods use the cluster's ``bundles``, ``active_bundle_id``, ``barriers``,
``partitions``, ``part_ids``, ``faults``, ``audit``, ``store`` and ``shadow_warmup_s``.
"""
from __future__ import annotations

import logging
import time

from ceptra_lab.definitions import compile_bundle, parse_bundle

LOG = logging.getLogger("ceptra_lab")
SHADOW_FAILURE_STATES = ("SHADOW_FAILED", "SHADOW_TIMEOUT")
BARRIER_GRACE_S = 600.0
CEP_TO_SHADOW = {"SHADOW_PENDING": "Pending", "SHADOW_REPLAYING": "Replaying", "SHADOW_WAITING_FOR_WAL": "Pending",
                 "SHADOW_READY": "Ready", "SHADOW_FAILED": "Expired", "SHADOW_TIMEOUT": "Expired"}


class BundleLifecycle:
    """Bundle registry, shadow warmup and activation barriers of the cluster."""

    def newest_bundle(self) -> dict | None:
        """The most recently uploaded bundle record."""
        return max(self.bundles.values(), key=lambda record: record["seq"]) if self.bundles else None


    # ---- bundles and shadow warmup ------------------------------------------------------------
    def upload_bundle(self, compiled, body: str, actor: str) -> tuple[dict, bool]:
        """Register a compiled bundle (no-op when identical); returns (record, created)."""
        existing = self.bundles.get(compiled.bundle_id)
        if existing is not None:
            return existing, False
        record = self._register_bundle(compiled, body, actor, time.time())
        if self.store is not None:
            self.store.append_record("bundles", {"body": body, "actor": actor, "ts": record["uploaded_ts"]})
        self.audit.append(actor, "bundle_upload", {"bundle_id": compiled.bundle_id, "def_version": compiled.def_version,
                                                   "needs_replay": compiled.needs_replay})
        return record, True

    def restore_bundle(self, stored: dict) -> None:
        """Re-register a bundle from the state dir (compiled again from its body)."""
        try:
            compiled = compile_bundle(parse_bundle(stored["body"]))
        except Exception:  # a bundle that no longer compiles is skipped, not fatal
            LOG.warning("stored bundle no longer compiles; skipped")
            return
        if compiled.bundle_id not in self.bundles:
            self._register_bundle(compiled, stored["body"], stored.get("actor", "lab"), stored.get("ts", time.time()))

    def _register_bundle(self, compiled, body: str, actor: str, uploaded_ts: float) -> dict:
        now = time.monotonic()
        record = {"bundle_id": compiled.bundle_id, "seq": len(self.bundles) + 1, "compiled": compiled, "body": body,
                  "uploaded_ts": uploaded_ts, "actor": actor, "state": "distributed",
                  "shadows": {pid: {"shadow_apply_state": "Pending", "cep_shadow_state": "SHADOW_PENDING",
                                    "needs_replay": bool(compiled.needs_replay), "warmup_ready_ratio": 0.0,
                                    "since": now} for pid in self.part_ids}}
        self.bundles[compiled.bundle_id] = record
        self.advance_shadows()
        for part_id in self.part_ids:
            self.refresh_partition_bundles(part_id)
        return record

    def refresh_partition_bundles(self, part_id: str) -> None:
        """Tell a partition the shadow it warms: the newest bundle unless that is already active
        THERE (a partition excluded from an activation stays on its old bundle and keeps warming)."""
        partition = self.partitions[part_id]
        newest = self.newest_bundle()
        shadow = newest["compiled"] if newest is not None and newest["compiled"] is not partition.active_bundle else None
        partition.set_bundles(partition.active_bundle, shadow)

    def _active_on(self, part_id: str, record: dict) -> bool:
        return self.partitions[part_id].active_bundle is record["compiled"]

    def advance_shadows(self) -> None:
        """Move every non-active bundle's per-partition shadow along Pending -> Replaying -> Ready."""
        now = time.monotonic()
        newest = self.newest_bundle()
        for record in self.bundles.values():
            for part_id, shadow in record["shadows"].items():
                if self._active_on(part_id, record):
                    shadow.update(shadow_apply_state="Ready", cep_shadow_state="SHADOW_READY", warmup_ready_ratio=1.0)
                    continue
                forced = self.faults[part_id]["shadow_state"] if record is newest else None
                if forced:
                    cep, ratio = forced, shadow["warmup_ready_ratio"]
                elif shadow["needs_replay"]:
                    cep, ratio = "SHADOW_WAITING_FOR_WAL", 0.0
                else:
                    elapsed = now - shadow["since"]
                    if elapsed < self.shadow_warmup_s / 3:
                        cep, ratio = "SHADOW_PENDING", 0.0
                    elif elapsed < self.shadow_warmup_s:
                        cep, ratio = "SHADOW_REPLAYING", round(elapsed / self.shadow_warmup_s, 3)
                    else:
                        cep, ratio = "SHADOW_READY", 1.0
                shadow.update(cep_shadow_state=cep, shadow_apply_state=CEP_TO_SHADOW[cep], warmup_ready_ratio=ratio)
                if record is newest and self.partitions[part_id].shadow_state != cep:
                    self.partitions[part_id].set_shadow_state(cep)

    def _apply_shadow_fault(self, part_id: str) -> None:
        newest = self.newest_bundle()
        if newest is not None and self.faults[part_id]["shadow_state"] is None:
            newest["shadows"][part_id]["since"] = time.monotonic()  # the shadow starts over after a cleared fault
        self.advance_shadows()

    def definitions_document(self) -> dict:
        """The GET /v1/definitions body."""
        self.advance_shadows()
        active = None
        if self.active_bundle_id:
            compiled = self.bundles[self.active_bundle_id]["compiled"]
            active = {"bundle_id": compiled.bundle_id, "def_version": compiled.def_version,
                      "policy_version": compiled.policy_version}
        bundles = []
        for record in sorted(self.bundles.values(), key=lambda r: r["seq"]):
            compiled = record["compiled"]
            state = "active" if record["bundle_id"] == self.active_bundle_id else record["state"]
            bundles.append({"bundle_id": compiled.bundle_id, "bundle_name": compiled.name,
                            "def_version": compiled.def_version, "policy_version": compiled.policy_version,
                            "state": state, "needs_replay": bool(compiled.needs_replay),
                            # what a client needs to check a lane_domains override without the bundle text
                            "compiled_queries": [query.compiled_summary() for query in compiled.queries],
                            "lane_domains": dict(compiled.lane_domains),
                            "partitions": {pid: {key: value for key, value in shadow.items() if key != "since"}
                                           for pid, shadow in record["shadows"].items()}})
        return {"active": active, "bundles": bundles}

    # ---- activation barriers --------------------------------------------------------------------
    def activate(self, bundle_id: str, threshold: float, exclude: list[str], abort: bool, actor: str) -> dict:
        """Create, update (exclusions/threshold) or abort the barrier of a bundle."""
        pending = next((b for b in self.barriers.values()
                        if b["bundle_id"] == bundle_id and b["state"] == "pending"), None)
        if abort:
            if pending is None:
                latest = max((b for b in self.barriers.values() if b["bundle_id"] == bundle_id),
                             key=lambda b: b["created"], default=None)
                return latest
            pending["state"] = "aborted"
            self.audit.append(actor, "activation_aborted", {"barrier_id": pending["barrier_id"], "bundle_id": bundle_id})
            self._save_runtime()
            return pending
        behind = [pid for pid in self.part_ids
                  if not self._active_on(pid, self.bundles[bundle_id]) and pid not in exclude]
        if pending is None and bundle_id == self.active_bundle_id and not behind:
            committed = max((b for b in self.barriers.values() if b["bundle_id"] == bundle_id and b["state"] == "committed"),
                            key=lambda b: b["created"], default=None)
            if committed is not None:
                return committed
        if pending is None:
            pending = {"barrier_id": f"barrier-{len(self.barriers) + 1}", "bundle_id": bundle_id, "state": "pending",
                       "readiness_threshold": threshold, "exclude_partitions": list(exclude), "missing_partitions": [],
                       "blocked_partitions": [], "barrier_index": {}, "created": time.time(), "actor": actor}
            self.barriers[pending["barrier_id"]] = pending
            self.audit.append(actor, "activation", {"barrier_id": pending["barrier_id"], "bundle_id": bundle_id,
                                                    "readiness_threshold": threshold, "exclude_partitions": exclude})
        else:
            pending["readiness_threshold"] = threshold
            pending["exclude_partitions"] = sorted(set(pending["exclude_partitions"]) | set(exclude), key=int)
            self.audit.append(actor, "activation_update", {"barrier_id": pending["barrier_id"], "bundle_id": bundle_id,
                                                           "readiness_threshold": threshold, "exclude_partitions": exclude})
        self.advance_shadows()
        self._evaluate_barrier(pending)
        self._save_runtime()
        return pending

    def evaluate_barriers(self) -> None:
        """Re-evaluate every pending barrier (called from the periodic task)."""
        for barrier in list(self.barriers.values()):
            if barrier["state"] == "pending":
                self._evaluate_barrier(barrier)

    def _evaluate_barrier(self, barrier: dict) -> None:
        record = self.bundles.get(barrier["bundle_id"])
        if record is None:
            barrier["state"] = "aborted"
            return
        # partitions already on the bundle need no barrier (a re-activation targets the ones left behind)
        targeted = [pid for pid in self.part_ids
                    if pid not in barrier["exclude_partitions"] and not self._active_on(pid, record)]
        shadows = record["shadows"]
        blocked = [pid for pid in targeted if shadows[pid]["cep_shadow_state"] in SHADOW_FAILURE_STATES]
        missing = [pid for pid in targeted if shadows[pid]["cep_shadow_state"] != "SHADOW_READY"]
        barrier["missing_partitions"], barrier["blocked_partitions"] = missing, blocked
        ratio = (len(targeted) - len(missing)) / len(targeted) if targeted else 1.0
        if ratio + 1e-9 >= barrier["readiness_threshold"] and not blocked:
            self._commit_barrier(barrier, record, targeted)
        elif time.time() - barrier["created"] > BARRIER_GRACE_S:
            barrier["state"] = "expired"
            self._save_runtime()

    def _commit_barrier(self, barrier: dict, record: dict, targeted: list[str]) -> None:
        compiled = record["compiled"]
        previous = self.active_bundle_id
        self.active_bundle_id = compiled.bundle_id
        for part_id in self.part_ids:
            partition = self.partitions[part_id]
            if part_id in targeted:
                barrier["barrier_index"][part_id] = int(partition.define_activate(compiled))
                partition.excluded_from = None
            elif not self._active_on(part_id, record):
                # §15: force-excluded partitions stay on their def_version and NotReady until re-included
                partition.excluded_from = barrier["barrier_id"]
            self.refresh_partition_bundles(part_id)
        if previous and previous in self.bundles:
            self.bundles[previous]["state"] = "superseded"
        barrier["state"] = "committed"
        barrier["committed_ts"] = time.time()
        self.advance_shadows()
        self.audit.append(barrier["actor"], "activation_committed", {
            "barrier_id": barrier["barrier_id"], "bundle_id": compiled.bundle_id, "def_version": compiled.def_version,
            "barrier_index": barrier["barrier_index"], "previous_bundle_id": previous})
        self._save_runtime()

    @staticmethod
    def barrier_view(barrier: dict) -> dict:
        """The contract's barrier document."""
        return {key: barrier[key] for key in ("barrier_id", "bundle_id", "state", "missing_partitions",
                                              "blocked_partitions", "barrier_index", "readiness_threshold",
                                              "exclude_partitions")}
