"""Cluster-level orchestration of the lab: partitions, routing, appends, faults, apply
workers, WAL replay jobs and persistence (bundles, shadow warmup and activation barriers
are in bundles.py).

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
from functools import partial

from ceptra_lab.audit import AuditLog
from ceptra_lab.bundles import BundleLifecycle
from ceptra_lab.config_history import ConfigHistory
from ceptra_lab.config_knobs import KnobView
from ceptra_lab.partition import Partition
from ceptra_lab.persistence import StateDir
from ceptra_lab.rules import DerivedEventSink

LOG = logging.getLogger("ceptra_lab")
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = 0xFFFFFFFFFFFFFFFF
APPLY_TICK_S = 0.005
COMPACTION_INTERVAL_S = 10.0


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


def refused(event_id, error: str) -> dict:
    """The answer to an append message the lab cannot read (PermanentDurability/PERMANENT_PAYLOAD)."""
    return {"event_id": event_id if isinstance(event_id, str) else None, "status": "PermanentDurability",
            "credit_hint": "Shed", "cep_credit_hint": {"client_window_size": 1, "retry_backoff_ms": 0},
            "cep_status_reason": "PERMANENT_PAYLOAD", "error": error}


def after_session_refusal(message: dict) -> dict:
    """The answer to a replay event whose session had a permanent refusal earlier in the request."""
    event_id = message.get("event_id")
    return {"event_id": event_id if isinstance(event_id, str) else None, "status": "TransientBackpressure",
            "credit_hint": "Hold", "cep_credit_hint": {"client_window_size": 1, "retry_backoff_ms": 0},
            "cep_status_reason": "TRANSIENT_RETRY",
            "error": "not applied: an earlier event of replay session %r was refused in this request"
                     % message.get("replay_session")}


class Cluster(BundleLifecycle):
    """The emulated cluster. All methods run on the event loop thread."""

    def __init__(self, partitions: int, test_mode: bool = False, apply_capacity: float | None = None,
                 state_dir: str | None = None, shadow_warmup_ms: int = 300, replication_capacity: float | None = None):
        self.part_ids = [str(index) for index in range(partitions)]
        self.test_mode = test_mode
        self.apply_capacity = apply_capacity
        self.replication_capacity = replication_capacity
        self.shadow_warmup_s = shadow_warmup_ms / 1000.0
        self.started = time.time()
        self.epoch = 1
        self.store = StateDir(state_dir) if state_dir else None
        self.config = ConfigHistory(self.part_ids, self.store.load_config_versions() if self.store else None)
        self.audit = AuditLog(self.store.load_records("audit") if self.store else None,
                              on_append=(lambda record: self.store.append_record("audit", record)) if self.store else None)
        if self.store:
            self.config.listeners.append(lambda _entry: self.store.save_config_versions(self.config.versions))
        self.config.listeners.append(self._on_config_change)
        # one view shared by every partition: a config change is one update() call
        self.view = KnobView(self.config.config, self.config.version)
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
        self.sink = DerivedEventSink()
        self._restore()
        for part_id, partition in self.partitions.items():
            partition.on_derived = self.sink.deliver
            if self.store is not None:
                partition.log_control = partial(self.store.wal_append, part_id)

    # ---- partitions -----------------------------------------------------------------------
    def _new_partition(self, part_id: str) -> Partition:
        return Partition(part_id, self.view, time.time_ns, apply_capacity=self.faults[part_id]["apply_capacity"],
                         replication_capacity=self.replication_capacity)

    def _on_config_change(self, entry: dict) -> None:
        """A new config version takes effect in every partition's log at its commit index."""
        self.view.update(entry["config"], entry["version"])
        for partition in self.partitions.values():
            partition.config_changed()

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

    def append_routed(self, message: dict, size: int) -> dict:
        """POST /append: route one message (part_id, else FNV-1a-64 of partition_key), append, apply."""
        if "partition_key" not in message and "partition_key_b64" in message:
            problem = self.normalize(message)
            if problem:
                return refused(message.get("event_id"), problem)
        part_id = self.route(message)
        if part_id is None:
            return refused(message.get("event_id"), "message needs a part_id or a string partition_key")
        response = self.append(part_id, message, size)
        self.after_batch(part_id)
        return response

    def append_batch(self, part_id: str, items: list[tuple], refused_sessions: set) -> list[dict]:
        """Append one batch of an append stream's lines to a known partition; returns one answer per item.

        ``items`` are ``(message, size)`` for a parsed line or ``(None, error)`` for a line that
        is not a JSON object. ``refused_sessions`` (kept by the caller across the batches of one
        request) holds the replay sessions that had an event refused with PermanentDurability:
        later events of such a session in the same request are answered
        TransientBackpressure/TRANSIENT_RETRY and not applied, so nothing after a refused
        replay event is committed (docs/lab.md). Applies inline and flushes the WAL buffer.
        """
        if self.store is None and self.faults[part_id]["not_leader"] == 0:
            append = self.partitions[part_id].append        # nothing to intercept: call the engine directly
        else:
            append = partial(self.append, part_id)
        responses = []
        for message, size in items:
            if message is None:
                responses.append(refused(None, size))
                continue
            session = message.get("replay_session")
            if refused_sessions and type(session) is str and session in refused_sessions:
                responses.append(after_session_refusal(message))
                continue
            # the engine checks part_id against the stream's partition, sizes and fields
            response = append(message, size)
            if type(session) is str and response.get("status") == "PermanentDurability":
                refused_sessions.add(session)
            responses.append(response)
        self.after_batch(part_id)
        return responses

    def append(self, part_id: str, message: dict, raw_size: int | None = None) -> dict:
        """Append one message to a known partition, honouring the not-leader fault."""
        fault = self.faults[part_id]
        if fault["not_leader"] > 0:
            fault["not_leader"] -= 1
            return permanent(message.get("event_id"), f"NOT_LEADER:{self.partitions[part_id].leader}")
        partition = self.partitions[part_id]
        response = partition.append(message, raw_size)
        if self.store is not None and "index" in response and not response.get("duplicate"):
            self.store.wal_append(part_id, {"index": response["index"], "term": response["term"],
                                            "commit_ns": partition.last_commit_ns, "msg": message, "size": raw_size})
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

    def wipe(self, part_id: str, actor: str, drop_checkpoint: bool = False) -> dict:
        """The full-recovery start of a partition (contract section 3, test RPCs).

        The WAL tail after the latest full checkpoint is lost; the checkpoint stays as the
        baseline (``drop_checkpoint``: it goes too, the partition starts empty). The ingress
        gate is forced to ``warmup`` whatever the config said, as a config change of its own
        (audited), so a stale ``open`` cannot skip the warmup. Returns the audit details.
        """
        partition = self.partitions[part_id]
        baseline = partition.wipe(keep_checkpoint=not drop_checkpoint)
        if self.store is not None:
            self.store.wal_truncate(part_id, baseline["full_index"])
            self.store.wal_append(part_id, {"ctl": "wipe", "after": baseline["full_index"], "term": partition.term})
        self.refresh_partition_bundles(part_id)
        details = {"part_id": part_id, "drop_checkpoint": drop_checkpoint, "baseline_index": baseline["full_index"],
                   "event_ts_high_ns": baseline["event_ts_high_ns"], "term": partition.term}
        self.audit.append(actor, "wipe", details)
        gate = self.config.config.get("partitions", {}).get(part_id, {}).get("ingress_gate")
        if gate != "warmup":
            previous = self.config.version
            patch = {"partitions": {part_id: {"ingress_gate": "warmup"}}}
            new_config, changed, _ = self.config.preview(patch, lambda old, new: ([], []))
            self.config.commit(new_config, actor, f"wipe of partition {part_id}")
            self.audit.append(actor, "config_change", {"version": self.config.version, "previous_version": previous,
                                                       "changed_keys": changed, "patch": patch,
                                                       "reason": f"wipe of partition {part_id}"})
        self._save_runtime()
        return details

    # ---- readiness and state ----------------------------------------------------------------
    def partition_readiness(self, part_id: str) -> dict:
        """One partition's readiness (the engine knows every reason, faults included)."""
        return self.partitions[part_id].readiness()

    def shadow_pending(self, part_id: str) -> bool:
        """True while the newest uploaded, not yet active bundle's shadow is not Ready here."""
        return self.partitions[part_id].definition_warmup_pending()

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
        if partition.replication_capacity is not None:
            partition.replicate(time.time_ns())
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
                        while partition.retry_expired:     # §3: each refused late retry is audited
                            self.audit.append("lab", "retry_expired", partition.retry_expired.pop(0))
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
                "excluded_from": partition.excluded_from,
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
            partition = self.partitions[part_id]
            if self.active_bundle_id is not None:     # a WAL from before activations were logged
                partition.active_bundle = self.bundles[self.active_bundle_id]["compiled"]
            info = saved.get(part_id, {})
            entries, controls = [], []
            for record in self.store.wal_messages(part_id):
                (controls if "ctl" in record else entries).append(record)
            if not entries and not controls:          # a new log: it starts with the config in force
                self.store.wal_append(part_id, {"ctl": "config", "after": 0, "version": self.config.version})
            partition.restore(entries, info, [self._resolve_control(c) for c in controls])
            self.refresh_partition_bundles(part_id)
            partition.unavailable_windows = list(info.get("unavailable_windows", []))
            partition.fence_until_ns = int(info.get("fence_until_ns", 0))
            partition.leader = info.get("leader", partition.leader)
            partition.routing_epoch = int(info.get("routing_epoch", partition.routing_epoch))
            partition.excluded_from = info.get("excluded_from")
        self.advance_shadows()

    def _resolve_control(self, control: dict) -> dict:
        """A stored control record with its config version or bundle resolved to objects."""
        resolved = dict(control)
        if control["ctl"] == "config":
            blob = self.config.blob(int(control.get("version", self.config.version)))
            resolved["value"] = KnobView(blob if blob is not None else self.config.config, int(control.get("version", 0)))
        elif control["ctl"] in ("shadow", "activate", "rebuild"):
            record = self.bundles.get(control.get("bundle_id"))
            resolved["value"] = record["compiled"] if record is not None else None
        return resolved

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


# ---- helpers --------------------------------------------------------------------------------------
def dumps(value) -> bytes:
    """Canonical JSON bytes (sorted keys) for digests."""
    import json
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
