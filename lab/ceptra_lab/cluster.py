"""Cluster-level orchestration of the lab: partitions, routing, faults, apply workers,
bundles with shadow warmup, activation barriers, WAL replay jobs and persistence.

The HTTP layer (server.py) turns requests into calls here; the partition engine
(partition.py) and the bundle compiler (definitions.py) stay pure and synchronous.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import time

from ceptra_lab.audit import AuditLog
from ceptra_lab.config_store import ConfigStore
from ceptra_lab.persistence import StateDir

from ceptra_lab.configview import ConfigView
from ceptra_lab.definitions import compile_bundle, parse_bundle
from ceptra_lab.partition import Partition

LOG = logging.getLogger("ceptra_lab")
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = 0xFFFFFFFFFFFFFFFF
APPLY_TICK_S = 0.005
COMPACTION_INTERVAL_S = 10.0
SHADOW_FAILURE_STATES = ("SHADOW_FAILED", "SHADOW_TIMEOUT")
BARRIER_GRACE_S = 600.0
CEP_TO_SHADOW = {"SHADOW_PENDING": "Pending", "SHADOW_REPLAYING": "Replaying", "SHADOW_WAITING_FOR_WAL": "Pending",
                 "SHADOW_READY": "Ready", "SHADOW_FAILED": "Expired", "SHADOW_TIMEOUT": "Expired"}


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit hash (the contract's routing function)."""
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & MASK64
    return value


def permanent(event_id, reason: str, error: str | None = None) -> dict:
    """A PermanentDurability append response (an event_id that is not a string is echoed as null)."""
    response = {"event_id": event_id if isinstance(event_id, str) else None, "status": "PermanentDurability", "credit_hint": "Shed",
                "cep_credit_hint": {"client_window_size": 0, "retry_backoff_ms": 0}, "cep_status_reason": reason}
    if error:
        response["error"] = error
    return response


class Cluster:
    """The emulated cluster. All methods run on the event loop thread."""

    def __init__(self, partitions: int, test_mode: bool = False, apply_capacity: float | None = None,
                 state_dir: str | None = None, shadow_warmup_ms: int = 300):
        self.part_ids = [str(index) for index in range(partitions)]
        self.test_mode = test_mode
        self.apply_capacity = apply_capacity
        self.shadow_warmup_s = shadow_warmup_ms / 1000.0
        self.started = time.time()
        self.epoch = 1
        self.store = StateDir(state_dir) if state_dir else None
        self.config = ConfigStore(self.part_ids, self.store.load_config_versions() if self.store else None)
        self.audit = AuditLog(self.store.load_records("audit") if self.store else None,
                              on_append=(lambda record: self.store.append_record("audit", record)) if self.store else None)
        if self.store:
            self.config.listeners.append(lambda _entry: self.store.save_config_versions(self.config.versions))
        self.config.listeners.append(self._on_config_change)
        # one view shared by every partition: a config change is one update() call
        self.view = ConfigView(self.config.config, self.config.version)
        self.faults: dict[str, dict] = {pid: {"apply_capacity": apply_capacity, "replication_lag_ms": 0,
                                             "shadow_state": None, "not_leader": 0} for pid in self.part_ids}
        self.http_503_ratio = 0.0
        self.partitions = {pid: self._new_partition(pid) for pid in self.part_ids}
        self.bundles: dict[str, dict] = {}         # bundle_id -> record (see _register_bundle)
        self.active_bundle_id: str | None = None
        self.barriers: dict[str, dict] = {}
        self.replay_jobs: dict[str, dict] = {}
        self.compaction = {"runs": 0, "duration_ms": 0.0}
        self._tasks: list[asyncio.Task] = []
        self._buckets = {pid: 0.0 for pid in self.part_ids}
        self._restore()

    # ---- partitions -----------------------------------------------------------------------
    def _new_partition(self, part_id: str) -> Partition:
        return Partition(part_id, self.view, time.time_ns, apply_capacity=self.faults[part_id]["apply_capacity"])

    def _on_config_change(self, entry: dict) -> None:
        self.view.update(entry["config"], entry["version"])

    def route(self, message: dict) -> str | None:
        """The partition of a message: its part_id, else FNV-1a-64(partition_key) mod P."""
        part_id = message.get("part_id")
        if part_id is not None:
            part_id = str(part_id)
            return part_id if part_id in self.partitions else None
        key = message.get("partition_key")
        if not isinstance(key, str):
            return None
        return self.part_ids[fnv1a_64(key.encode()) % len(self.part_ids)]

    @staticmethod
    def normalize(message: dict) -> str | None:
        """Decode the reference wire's `partition_key_b64` (needed for routing); return an error text or None.

        `payload_b64` is decoded by the engine.
        """
        try:
            message["partition_key"] = base64.b64decode(message.pop("partition_key_b64"), validate=True).decode()
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            return f"partition_key_b64 is not base64 of UTF-8 text: {exc}"
        return None

    def append(self, part_id: str, message: dict, raw_size: int | None = None) -> dict:
        """Append one message to a known partition, honouring the not-leader fault."""
        fault = self.faults[part_id]
        if fault["not_leader"] > 0:
            fault["not_leader"] -= 1
            return permanent(message.get("event_id"), f"NOT_LEADER:{self.partitions[part_id].leader}")
        response = self.partitions[part_id].append(message, raw_size)
        if self.store is not None and "index" in response and not response.get("duplicate"):
            self.store.wal_append(part_id, {"index": response["index"], "term": response["term"],
                                            "commit_ns": time.time_ns(), "msg": message, "size": raw_size})
        return response

    def after_batch(self, part_id: str) -> None:
        """Apply inline when the partition has no capacity limit; flush the WAL buffer."""
        if self.faults[part_id]["apply_capacity"] is None:
            self.partitions[part_id].apply_pending()
        if self.store is not None:
            self.store.flush_wal()

    # ---- faults ---------------------------------------------------------------------------
    def set_faults(self, body: dict) -> None:
        """Apply a validated fault body (server.py checks the types)."""
        targets = [str(body["part_id"])] if body.get("part_id") is not None else self.part_ids
        if "http_503_ratio" in body:
            self.http_503_ratio = float(body["http_503_ratio"])
        for part_id in targets:
            fault = self.faults[part_id]
            if "apply_capacity" in body:
                fault["apply_capacity"] = body["apply_capacity"]
                self.partitions[part_id].apply_capacity = body["apply_capacity"]
            if "replication_lag_ms" in body:
                fault["replication_lag_ms"] = body["replication_lag_ms"]
                self.partitions[part_id].set_replication_lag_ms(body["replication_lag_ms"])
            if "shadow_state" in body:
                fault["shadow_state"] = body["shadow_state"]
                self._apply_shadow_fault(part_id)
            if body.get("not_leader"):
                fault["not_leader"] = int(body["not_leader"])
                partition = self.partitions[part_id]
                partition.leader = "ceptra-1" if partition.leader == "ceptra-0" else "ceptra-0"
                partition.routing_epoch += 1

    def fault_table(self) -> dict:
        """The current fault table (GET /v1/test/faults)."""
        now = time.time_ns()
        return {"http_503_ratio": self.http_503_ratio,
                "partitions": {pid: dict(fault, outage_remaining_ms=max(0, (self.partitions[pid].fence_until_ns - now)
                                                                        // 1_000_000))
                               for pid, fault in self.faults.items()}}

    def start_outage(self, part_ids: list[str], duration_ms: int, actor: str) -> dict:
        """Fence partitions for duration_ms; record the windows and an audit record."""
        start_ns = time.time_ns()
        end_ns = start_ns + duration_ms * 1_000_000
        for part_id in part_ids:
            self.partitions[part_id].set_outage(start_ns, end_ns)
        details = {"part_ids": part_ids, "start_ts_ns": start_ns, "end_ts_ns": end_ns, "duration_ms": duration_ms}
        self.audit.append(actor, "outage", details)
        self._save_runtime()
        return details

    def wipe(self, part_id: str, actor: str) -> None:
        """Empty a partition's WAL and state; it restarts in warmup."""
        self.partitions[part_id].wipe()
        if self.store is not None:
            self.store.wal_reset(part_id)
        self.audit.append(actor, "wipe", {"part_id": part_id})

    # ---- readiness and state ----------------------------------------------------------------
    def partition_readiness(self, part_id: str) -> dict:
        """One partition's readiness (the engine knows every reason, faults included)."""
        return self.partitions[part_id].readiness()

    def shadow_pending(self, part_id: str) -> bool:
        """True while the newest uploaded, not yet active bundle's shadow is not Ready here."""
        return self.partitions[part_id].definition_warmup_pending()

    def newest_bundle(self) -> dict | None:
        """The most recently uploaded bundle record."""
        return max(self.bundles.values(), key=lambda record: record["seq"]) if self.bundles else None

    def manifest(self, part_id: str) -> dict:
        """One /v1/state partitions element."""
        return self.partitions[part_id].manifest()

    def state(self) -> dict:
        """The /v1/state document."""
        return {"cluster": {"epoch": self.epoch, "partitions": len(self.part_ids), "test_mode": self.test_mode,
                            "config_version": self.config.version, "active_bundle_id": self.active_bundle_id},
                "partitions": [self.manifest(pid) for pid in self.part_ids]}

    def readiness_document(self) -> dict:
        """The spec-shaped /readyz body (server.py reshapes it for --dialect reference)."""
        partitions = {pid: self.partition_readiness(pid) for pid in self.part_ids}
        ready_count = sum(1 for doc in partitions.values() if doc["ready"])
        ratio = ready_count / len(partitions)
        threshold = self.config.config.get("readiness", {}).get("healthy_partition_ratio", 0.99)
        reasons = [] if ratio >= threshold else ["insufficient_healthy_partitions"]
        newest = self.newest_bundle()
        if newest is not None:
            shadows = newest["shadows"].values()
            warmup_ratio = sum(shadow["warmup_ready_ratio"] for shadow in shadows) / len(self.part_ids)
            order = ["Expired", "Pending", "Replaying", "Ready"]
            shadow_state = min((shadow["shadow_apply_state"] for shadow in shadows), key=order.index)
        else:
            warmup_ratio, shadow_state = 1.0, "Ready"
        digest_source = dumps({pid: [doc["ready"], sorted(doc["reasons"])] for pid, doc in partitions.items()})
        latest_barrier = max(self.barriers.values(), key=lambda b: b["created"], default=None)
        return {"definition_bundle_id": self.active_bundle_id,
                "activation_barrier_id": latest_barrier["barrier_id"] if latest_barrier else None,
                "shadow_apply_state": shadow_state, "warmup_ready_ratio": round(warmup_ratio, 4),
                "partition_ready_ratio": round(ratio, 4),
                "readiness_digest": "sha256:" + hashlib.sha256(digest_source).hexdigest(),
                "ready": not reasons, "threshold": {"healthy_partition_ratio": threshold},
                "reasons": reasons, "partitions": partitions}

    # ---- background work ----------------------------------------------------------------
    def start(self) -> None:
        """Start the apply workers and periodic tasks on the running loop."""
        loop = asyncio.get_running_loop()
        for part_id in self.part_ids:
            self._tasks.append(loop.create_task(self._apply_worker(part_id)))
        self._tasks.append(loop.create_task(self._periodic()))

    async def stop(self) -> None:
        """Cancel background tasks and persist everything."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.persist()

    def persist(self) -> None:
        """Flush the WAL (fsync) and the runtime document."""
        if self.store is not None:
            self.store.flush_wal(sync=True)
            self._save_runtime()

    async def _apply_worker(self, part_id: str) -> None:
        """Apply committed entries at the partition's capacity (token bucket, ~5 ms ticks)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(APPLY_TICK_S)
            try:
                last = self._apply_tick(part_id, last)
            except Exception:  # an engine bug must not silently stop this partition's applies
                LOG.exception("apply worker of partition %s failed a tick", part_id)
                last = time.monotonic()

    def _apply_tick(self, part_id: str, last: float) -> float:
        """One apply-worker tick; returns the tick's timestamp."""
        now = time.monotonic()
        elapsed = now - last
        capacity = self.faults[part_id]["apply_capacity"]
        partition = self.partitions[part_id]
        if capacity is None:
            if partition.queue_depth():
                partition.apply_pending()
            return now
        # Budget accrues for the real elapsed time (a late tick still gets its share), capped
        # at 50 ms worth so an idle worker cannot burst far above its capacity.
        bucket = min(self._buckets[part_id] + capacity * elapsed, max(1.0, capacity * 0.05))
        whole = int(bucket)
        if whole > 0 and partition.queue_depth():
            applied = partition.apply_pending(whole)
            bucket -= applied
        elif not partition.queue_depth():
            bucket = min(bucket, 1.0)
        self._buckets[part_id] = bucket
        return now

    async def _periodic(self) -> None:
        """Checkpoints, compaction, shadow warmup, barriers and WAL flushes."""
        last_tick = last_compaction = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            try:
                now = time.monotonic()
                self.advance_shadows()
                self.evaluate_barriers()
                if now - last_tick >= 0.25:
                    # watermarks, dedup expiry and the engine's periodic full checkpoints also
                    # progress on idle partitions
                    last_tick = now
                    for partition in self.partitions.values():
                        partition.tick()
                if now - last_compaction >= COMPACTION_INTERVAL_S:
                    last_compaction = now
                    self.compact_all()
                if self.store is not None:
                    self.store.flush_wal()
            except Exception:  # a bug here must not kill the background loop
                LOG.exception("periodic task failed")

    def checkpoint_all(self, part_ids: list[str] | None = None) -> list[str]:
        """Take a full checkpoint of the given (default: all) partitions."""
        targets = part_ids or self.part_ids
        for part_id in targets:
            self.partitions[part_id].checkpoint()
        return targets

    def compact_all(self, part_ids: list[str] | None = None) -> dict:
        """Run the compaction job; returns per-partition results."""
        started = time.perf_counter()
        results = {pid: self.partitions[pid].compact() for pid in (part_ids or self.part_ids)}
        self.compaction["duration_ms"] = (time.perf_counter() - started) * 1000.0
        self.compaction["runs"] += 1
        return results

    def should_fail_503(self) -> bool:
        """Roll the dice for the http_503_ratio fault."""
        return self.http_503_ratio > 0 and random.random() < self.http_503_ratio

    # ---- persistence ----------------------------------------------------------------------
    def _save_runtime(self) -> None:
        if self.store is None:
            return
        self.store.save_document("runtime", {
            "active_bundle_id": self.active_bundle_id, "barriers": self.barriers, "replay_jobs": self.replay_jobs,
            "epoch": self.epoch, "partitions": {pid: self._partition_runtime(pid) for pid in self.part_ids}})

    def _partition_runtime(self, part_id: str) -> dict:
        partition = self.partitions[part_id]
        return {"unavailable_windows": partition.unavailable_windows, "fence_until_ns": partition.fence_until_ns,
                "warmup": partition.ingress_gate() == "warmup", "term": partition.term,
                "leader": partition.leader, "routing_epoch": partition.routing_epoch,
                "replay_sessions": partition.manifest()["replay_sessions"]}

    def _restore(self) -> None:
        """Rebuild state from --state-dir: bundles, runtime document, then replay each WAL."""
        if self.store is None:
            return
        runtime = self.store.load_document("runtime", {}) or {}
        for record in self.store.load_records("bundles"):
            self.restore_bundle(record)
        self.active_bundle_id = runtime.get("active_bundle_id") if runtime.get("active_bundle_id") in self.bundles else None
        self.barriers = runtime.get("barriers", {})
        self.replay_jobs = runtime.get("replay_jobs", {})
        for job in self.replay_jobs.values():
            if job.get("state") == "running":   # its task died with the previous process
                job["state"], job["error"] = "failed", "interrupted by a lab restart; start a new replay job"
        self.epoch = runtime.get("epoch", 1) + 1
        saved = runtime.get("partitions", {})
        for part_id in self.part_ids:
            self.refresh_partition_bundles(part_id)
            partition = self.partitions[part_id]
            info = saved.get(part_id, {})
            partition.restore(list(self.store.wal_messages(part_id)), info)
            partition.unavailable_windows = list(info.get("unavailable_windows", []))
            partition.fence_until_ns = int(info.get("fence_until_ns", 0))
            partition.leader = info.get("leader", partition.leader)
            partition.routing_epoch = int(info.get("routing_epoch", partition.routing_epoch))
        self.advance_shadows()

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
        """Tell a partition its active bundle and the shadow (newest non-active) bundle."""
        active = self.bundles[self.active_bundle_id]["compiled"] if self.active_bundle_id else None
        newest = self.newest_bundle()
        shadow = newest["compiled"] if newest is not None and newest["bundle_id"] != self.active_bundle_id else None
        self.partitions[part_id].set_bundles(active, shadow)

    def advance_shadows(self) -> None:
        """Move every non-active bundle's per-partition shadow along Pending -> Replaying -> Ready."""
        now = time.monotonic()
        newest = self.newest_bundle()
        for record in self.bundles.values():
            if record["bundle_id"] == self.active_bundle_id:
                for shadow in record["shadows"].values():
                    shadow.update(shadow_apply_state="Ready", cep_shadow_state="SHADOW_READY", warmup_ready_ratio=1.0)
                continue
            for part_id, shadow in record["shadows"].items():
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
        if pending is None and bundle_id == self.active_bundle_id:
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
        targeted = [pid for pid in self.part_ids if pid not in barrier["exclude_partitions"]]
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
            self.refresh_partition_bundles(part_id)
            if part_id in targeted:
                barrier["barrier_index"][part_id] = define_activate(partition, compiled)
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

    # ---- WAL replay jobs --------------------------------------------------------------------------
    def start_replay(self, part_ids: list[str], source: str, reason: str, actor: str) -> dict:
        """Start a WAL-replay-from-checkpoint job over the partitions (runs in the background)."""
        job = {"job_id": f"replay-{len(self.replay_jobs) + 1}", "state": "running", "from": source, "reason": reason,
               "created": time.time(), "actor": actor,
               "partitions": {pid: {"from_index": None, "to_index": None, "replayed_index": None} for pid in part_ids}}
        self.replay_jobs[job["job_id"]] = job
        self.audit.append(actor, "replay_job", {"job_id": job["job_id"], "part_ids": part_ids, "from": source,
                                                "reason": reason})
        self._tasks.append(asyncio.get_running_loop().create_task(self._run_replay(job)))
        self._save_runtime()
        return job

    async def _run_replay(self, job: dict) -> None:
        try:
            for part_id, progress in job["partitions"].items():
                while True:
                    step = self.partitions[part_id].replay_from_checkpoint(2000)
                    for key in ("from_index", "to_index", "replayed_index"):
                        if key in step:
                            progress[key] = step[key]
                    if step.get("done", True):
                        break
                    await asyncio.sleep(0)
                for record in self.bundles.values():
                    shadow = record["shadows"][part_id]
                    if shadow["needs_replay"]:   # the upgrade:false shadow now warms up from the replayed WAL
                        shadow["needs_replay"] = False
                        shadow["since"] = time.monotonic()
            job["state"] = "completed"
        except Exception as exc:  # report the failure in the job document instead of crashing
            LOG.exception("replay job %s failed", job["job_id"])
            job["state"], job["error"] = "failed", str(exc)
        job["finished"] = time.time()
        self.advance_shadows()
        self.audit.append(job["actor"], "replay_job_finished", {"job_id": job["job_id"], "state": job["state"],
                                                                "partitions": job["partitions"]})
        self._save_runtime()

    @staticmethod
    def job_view(job: dict) -> dict:
        """The contract's replay job document."""
        view = {key: job[key] for key in ("job_id", "state", "partitions", "reason", "from")}
        if "error" in job:
            view["error"] = job["error"]
        return view


# ---- seams to the partition engine and the bundle compiler ----------------------------------------
def dumps(value) -> bytes:
    """Canonical JSON bytes (sorted keys) for digests."""
    import json
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def define_activate(partition, compiled) -> int:
    """Record the DEFINE_ACTIVATE barrier in a partition; returns the barrier index.

    `Partition.define_activate()` records it (no WAL entry: the index is the commit index at
    the switch, entries above it apply with the new def_version). An engine without that
    method falls back to the commit index, which is the same number.
    """
    if hasattr(partition, "define_activate"):
        return int(partition.define_activate(compiled))
    return int(partition.commit_index)
