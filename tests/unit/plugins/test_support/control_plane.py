"""The one in-memory CEPtra control plane of the unit tests.

``ControlPlane`` IS a ``CeptraClient``: only the wire is replaced. Every call goes through
the real client (route table, headers, Idempotency-Key, retries, error mapping and hints,
``post_ndjson_raw``) and reaches this object as method, path, headers and body instead of
leaving over a socket. The state behind it follows the contract (../shared/ceptra-api.md):

- ``/v1/config``: versions with ETag, If-Match and 412, RFC 7396 merge as the lab applies it
  (or the reference server's top-level merge), 422 for an out-of-bounds checkpoint cadence;
- ``/v1/definitions`` (+ ``validate``): bundles with per-partition shadows, the active bundle;
- ``/v1/activate``: activation barriers; ``/v1/replay``: WAL replay jobs;
- ``/v1/state``, ``/readyz`` (with per-partition lags), ``/v1/audit`` (write, read with
  ``kind``/``since``), ``/v1/test/metrics-snapshot``;
- the append stream with event_id dedup for every event and replay-session (replay_seq) dedup on top.

Identity follows the lab: ``role`` is the caller's role (``ingest`` < ``observer`` <
``operator`` < ``admin``); a call needing a stronger role is answered 403.

Scripted behaviour is plain attributes: ``script`` (per-event append answers),
``fail_requests`` (connection failures), ``warm_after_polls``, ``job_polls``, ``job_fails``,
``validate_violations``, ``before_patch`` (another writer racing a PATCH)... Every call is
recorded in ``calls`` as a :class:`Call`; handlers are ``_<method>_<route>(call)`` methods
returning ``(status, document)`` or ``(status, document, headers)``, so a test can replace
one route's behaviour by overriding or wrapping its handler.
"""

import copy
import json
import re
import threading
import time
from collections import namedtuple
from urllib.parse import parse_qs, unquote, urlsplit

from ceptra_lab.config_history import merge_patch   # RFC 7396, exactly as the lab applies it

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, Headers
from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import expected_bundle_id
from ansible_collections.ceptra.backfill.plugins.module_utils._routes import DEFAULT_ROUTES

Call = namedtuple("Call", "method route params query body headers")

ROLES = ("ingest", "observer", "operator", "admin")

READY_SHADOW = {"shadow_apply_state": "Ready", "cep_shadow_state": "SHADOW_READY", "needs_replay": False,
                "warmup_ready_ratio": 1.0}
PENDING_SHADOW = {"shadow_apply_state": "Pending", "cep_shadow_state": "SHADOW_PENDING", "needs_replay": False,
                  "warmup_ready_ratio": 0.0}
WAITING_SHADOW = {"shadow_apply_state": "Pending", "cep_shadow_state": "SHADOW_WAITING_FOR_WAL",
                  "needs_replay": True, "warmup_ready_ratio": 0.0}
FAILED_SHADOW = {"shadow_apply_state": "Expired", "cep_shadow_state": "SHADOW_FAILED", "needs_replay": False,
                 "warmup_ready_ratio": 0.4}

DEFAULT_CONFIG = {
    "lateness_allowance_ms": 2000,
    "correction_horizon_ms": 3600000,
    "dedup_capacity_per_partition": 1000000,
    "checkpoint_full_interval_ms": 30000,
    "partition_flow": {"max_events": 2048, "max_bytes": 16777216, "max_event_bytes": 1048576},
    "readiness": {"healthy_partition_ratio": 0.99, "apply_lag_ms": 200, "replication_lag_ms": 250},
    "metrics": {},
    "partitions": {},
    "lane_domains": {},
    "annotations": {},
}


def _route_patterns():
    """(regex, route name) for every route of the real route table, most specific first."""
    patterns = []
    for name, template in DEFAULT_ROUTES.items():
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
        patterns.append((re.compile("^%s$" % regex), name))
    return sorted(patterns, key=lambda item: -len(item[0].pattern))


_PATTERNS = _route_patterns()


def _needs_replay(bundle):
    return '"upgrade": false' in json.dumps(bundle)


class ControlPlane(CeptraClient):
    """In-memory control plane behind a real client (see the module docstring)."""

    # NDJSON answers as the standard library writes them (", " and ": "); True: the compact
    # form the lab (and a cluster built on orjson) writes, which the sender checks per request.
    compact_answers = False

    def __init__(self, partitions=4, test_mode=True, role="operator", config=None, top_level_merge=False,
                 sessions=True, window=64, report_bundle_id=True, retries=0, event_id_dedup=True):
        super().__init__("http://control-plane.test", token="test-token", retries=retries)
        self.sleep = lambda seconds: None   # the client's retry backoff does not wait here
        self.role = role
        self.part_ids = [str(i) for i in range(partitions)]
        self.test_mode = test_mode
        self.calls = []
        self.closed = False
        self.lock = threading.RLock()
        # config
        self.versions = [copy.deepcopy(DEFAULT_CONFIG if config is None else config)]
        self.top_level_merge = top_level_merge
        self.before_patch = []              # callables(plane) run right before the next PATCHes
        self.dedup_occupancy = 0
        # definitions, activation, WAL replay jobs, snapshots
        self.bundles = {}                   # bundle_id -> entry (insertion ordered)
        self.active = None
        self.active_extra = {}              # more fields of the active bundle's entry (compiled_queries, ...)
        self.report_bundle_id = report_bundle_id
        self.validate_violations = None
        self.validate_warnings = ["lanes at 48"]
        self.compiled_queries = []          # what /v1/definitions/validate reports
        self.new_shadow = PENDING_SHADOW    # shadow every partition gets on upload (needs_replay overrides)
        self.warm_after_polls = None        # GET definitions polls after which pending shadows turn ready
        self.job_polls = 1                  # GET replay_job polls until a job completes
        self.job_fails = False
        self.barriers = {}
        self.jobs = {}
        self.snapshots = {}
        self._definition_polls = 0
        # state, readiness, audit
        self.lags = {}                      # part_id -> (apply_lag_ms, replication_lag_ms)
        self.reasons = {}                   # part_id -> readiness reasons besides the gate's (a test sets them)
        self.checkpoints = {}               # part_id -> {full_index, event_ts_high_ns} (a wiped partition's baseline)
        self.wiped = set()                  # partitions in warmup unless the config opens their gate
        self.state_calls = 0
        self.audit = []                     # records {id, ts, actor, kind, details}, oldest first
        # append stream
        self.sessions = sessions
        # False: a stricter cluster than the contract's, deduplicating by replay_seq only, so a
        # test sees every event the worker would have applied twice by its own fault
        self.event_id_dedup = event_id_dedup
        self.window = window
        self.applied = {}                   # part_id -> event_ids in apply order
        self.last_seq = {}                  # replay session -> last seq
        self.seen_ids = set()
        self.script = {}                    # event_id -> answers to give, one per attempt
        self.requests = []                  # (part_id, [replay_seq or event_id of each line])
        self.fail_requests = 0              # the next N calls fail as a broken connection

    # ------------------------------------------------------------------ the wire
    def _send_once(self, method, path, payload, headers):
        with self.lock:
            if self.fail_requests:
                self.fail_requests -= 1
                raise ConnectionResetError("connection reset by the test")
            call = self._record(method, path, payload, headers)
            answer = self._dispatch(call)
        status, doc = answer[0], answer[1]
        extra = answer[2] if len(answer) > 2 else {}
        if isinstance(doc, list):      # NDJSON answer
            separators = (",", ":") if self.compact_answers else None
            raw = b"".join(json.dumps(item, separators=separators).encode("utf-8") + b"\n" for item in doc)
        else:
            raw = json.dumps(doc).encode("utf-8")
        return status, Headers(extra.items()), raw

    def _record(self, method, path, payload, headers):
        parts = urlsplit(path)
        route, params = "unknown", {}
        for pattern, name in _PATTERNS:
            match = pattern.match(parts.path)
            if match:
                route, params = name, {k: unquote(v) for k, v in match.groupdict().items()}
                break
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        body = None
        if payload is not None:
            text = payload.decode("utf-8")
            if headers.get("Content-Type") == "application/x-ndjson":
                body = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = text          # e.g. YAML bundle text posted as it is
        call = Call(method, route, params or None, query or None, body, dict(headers))
        self.calls.append(copy.deepcopy(call))
        return call

    def _dispatch(self, call):
        needed = self._required_role(call)
        if ROLES.index(self.role) < ROLES.index(needed):
            return 403, {"error": "identity spiffe://ceptra.test/role/%s has role %s; this call needs %s"
                                  % (self.role, self.role, needed), "status": 403}
        handler = getattr(self, "_%s_%s" % (call.method.lower(), call.route), None)
        if handler is None:
            return 404, {"error": "no route %s %s" % (call.method, call.route), "status": 404}
        return handler(call)

    @staticmethod
    def _required_role(call):
        if call.route in ("append", "append_stream"):
            return "ingest"
        if call.route.startswith("test_") and call.route != "test_metrics_snapshot":
            return "admin"
        return "observer" if call.method == "GET" else "operator"

    def close(self):
        self.closed = True
        super().close()

    # ------------------------------------------------------------------ test helpers
    def writes(self, route=None):
        """Calls other than GET (optionally to one route)."""
        return [c for c in self.calls if c.method != "GET" and (route is None or c.route == route)]

    @property
    def patches(self):
        return [c for c in self.calls if c.method == "PATCH"]

    @property
    def version(self):
        return len(self.versions)

    @property
    def config(self):
        return self.versions[-1]

    def external_write(self, patch):
        """Another writer changes the config (no If-Match)."""
        self._apply(patch)

    def add_bundle(self, bundle_id, shadow=None, **per_partition):
        """Register a bundle directly (shadows ready by default); ``per_partition`` maps "p<id>" to a shadow."""
        shadow = shadow or READY_SHADOW
        partitions = {p: dict(per_partition.get("p" + p, shadow)) for p in self.part_ids}
        self.bundles[bundle_id] = {"bundle_id": bundle_id, "def_version": 1, "policy_version": 1,
                                   "state": "distributed", "partitions": partitions}
        return self.bundles[bundle_id]

    def set_shadow(self, bundle_id, part_id, shadow):
        self.bundles[bundle_id]["partitions"][part_id] = dict(shadow)

    # ------------------------------------------------------------------ config
    def _get_config(self, call):
        return 200, {"version": self.version, "config": copy.deepcopy(self.config)}, {"ETag": '"%d"' % self.version}

    def _patch_config(self, call):
        if self.before_patch:
            self.before_patch.pop(0)(self)
        if call.headers.get("If-Match") not in (None, '"%d"' % self.version):
            return 412, {"error": "version moved", "status": 412}
        cadence = self._merged(call.body).get("checkpoint_full_interval_ms")
        if not 15000 <= cadence <= 300000:
            return 422, {"error": "invalid", "status": 422,
                         "violations": [{"path": "checkpoint_full_interval_ms", "message": "out of bounds"}]}
        previous = self.version
        changed = self._apply(call.body)
        return 200, {"version": self.version, "previous_version": previous, "impact": "hot", "changed_keys": changed}

    def _merged(self, patch):
        if not self.top_level_merge:
            return merge_patch(self.config, patch)
        new = copy.deepcopy(self.config)
        for key, value in patch.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = copy.deepcopy(value)  # nested nulls are stored as they are
        return new

    def _apply(self, patch):
        new = self._merged(patch)
        if new == self.config:
            return []
        changed = sorted(key for key in set(new) | set(self.config) if new.get(key) != self.config.get(key))
        self.versions.append(new)
        return changed

    # ------------------------------------------------------------------ definitions
    def _post_definitions_validate(self, call):
        body = call.body
        if isinstance(body, str):
            return 422, {"error": "bundle does not parse", "status": 422,
                         "violations": [{"path": "body", "message": "YAML syntax error at line 3 (from the cluster)"}]}
        if self.validate_violations:
            return 422, {"error": "invalid bundle", "status": 422, "violations": self.validate_violations}
        header = body.get("bundle", {})
        report = {"bundle_name": header.get("name"), "def_version": header.get("def_version"), "policy_version": 1,
                  "compiled_queries": copy.deepcopy(self.compiled_queries),
                  "lane_report": {"projections": [], "total_projected_lanes": 0},
                  "warnings": list(self.validate_warnings)}
        if self.report_bundle_id:
            report["bundle_id"] = expected_bundle_id(body)
        return 200, report

    def _get_definitions(self, call):
        self._definition_polls += 1
        if self.warm_after_polls is not None and self._definition_polls >= self.warm_after_polls:
            for entry in self.bundles.values():
                for part_id, shadow in entry["partitions"].items():
                    if shadow["cep_shadow_state"] in ("SHADOW_PENDING", "SHADOW_REPLAYING"):
                        entry["partitions"][part_id] = dict(READY_SHADOW)
        active = None
        if self.active:
            active = dict({"bundle_id": self.active, "def_version": 1, "policy_version": 1},
                          **copy.deepcopy(self.active_extra))
        bundles = []
        for entry in self.bundles.values():
            entry = copy.deepcopy(entry)
            if entry["bundle_id"] == self.active:
                entry["state"] = "active"
            bundles.append(entry)
        return 200, {"active": active, "bundles": bundles}

    def _post_definitions(self, call):
        if self.validate_violations:
            return 422, {"error": "invalid bundle", "status": 422, "violations": self.validate_violations}
        bundle_id = expected_bundle_id(call.body)
        if bundle_id not in self.bundles:
            self.add_bundle(bundle_id, WAITING_SHADOW if _needs_replay(call.body) else self.new_shadow)
        return 200, {"bundle_id": bundle_id, "def_version": 1, "state": "distributed"}

    # ------------------------------------------------------------------ activation
    def _evaluate(self, barrier):
        entry = self.bundles[barrier["bundle_id"]]
        targeted = [p for p in self.part_ids if p not in barrier["exclude_partitions"]]
        missing = [p for p in targeted if entry["partitions"][p]["cep_shadow_state"] != "SHADOW_READY"]
        barrier["missing_partitions"] = missing
        # like the lab: failed shadows are named and block the barrier until excluded or aborted
        barrier["blocked_partitions"] = [p for p in missing if entry["partitions"][p]["cep_shadow_state"]
                                         in ("SHADOW_FAILED", "SHADOW_TIMEOUT")]
        if not missing:
            barrier["state"] = "committed"
            barrier["barrier_index"] = {p: 100 for p in targeted}
            self.active = barrier["bundle_id"]

    def _post_activate(self, call):
        body = call.body
        bundle_id = body["bundle_id"]
        pending = next((b for b in self.barriers.values() if b["bundle_id"] == bundle_id and b["state"] == "pending"),
                       None)
        if body.get("abort"):
            if pending is None:
                return 409, {"error": "nothing to abort", "status": 409}
            pending["state"] = "aborted"
            return 200, dict(pending)
        if pending is None:
            pending = {"barrier_id": "barrier-%d" % (len(self.barriers) + 1), "bundle_id": bundle_id,
                       "state": "pending", "missing_partitions": [], "barrier_index": {},
                       "exclude_partitions": list(body.get("exclude_partitions") or [])}
            self.barriers[pending["barrier_id"]] = pending
        else:  # like the lab: a second request updates the pending barrier's exclusions
            pending["exclude_partitions"] = sorted(set(pending["exclude_partitions"]) |
                                                   set(body.get("exclude_partitions") or []))
        self._evaluate(pending)
        return 200, dict(pending)

    def _get_activation(self, call):
        barrier = self.barriers.get(call.params["barrier_id"])
        if barrier is None:
            return 404, {"error": "no such barrier", "status": 404}
        if barrier["state"] == "pending":
            self._evaluate(barrier)
        return 200, dict(barrier)

    # ------------------------------------------------------------------ WAL replay jobs
    def _post_replay_jobs(self, call):
        job_id = "replay-%d" % (len(self.jobs) + 1)
        self.jobs[job_id] = {"job_id": job_id, "state": "running", "polls": 0,
                             "partitions": {p: {"from_index": 10, "to_index": 50, "replayed_index": 10}
                                            for p in call.body["part_ids"]}}
        # the CP audits every replay job (contract section 3, /v1/audit)
        self.audit.append({"id": "a-%d" % (len(self.audit) + 1), "ts": time.time(), "actor": "cp", "kind": "replay_job",
                           "details": {"job_id": job_id, "part_ids": list(call.body["part_ids"])}})
        return 202, {"job_id": job_id, "state": "running"}

    def _get_replay_job(self, call):
        job = self.jobs[call.params["job_id"]]
        job["polls"] += 1
        if job["polls"] >= self.job_polls and job["state"] == "running":
            job["state"] = "failed" if self.job_fails else "completed"
            for part_id, progress in job["partitions"].items():
                progress["replayed_index"] = progress["to_index"]
                for entry in self.bundles.values():
                    if entry["partitions"][part_id]["needs_replay"] and not self.job_fails:
                        entry["partitions"][part_id] = dict(READY_SHADOW)
            if self.job_fails:
                job["error"] = "checkpoint 7 unreadable"
        return 200, {k: v for k, v in job.items() if k != "polls"}

    # ------------------------------------------------------------------ state, readiness, snapshots
    def _get_state(self, call):
        self.state_calls += 1
        partitions = []
        for part_id in self.part_ids:
            applied = len(self.applied.get(part_id, []))
            checkpoint = dict(self.checkpoints.get(part_id) or {"full_index": 0, "event_ts_high_ns": 0})
            applied += checkpoint["full_index"]
            gate = self.gate(part_id)
            entry = {"part_id": part_id, "leader": "cp-0", "commit_index": applied, "applied_index": applied,
                     "checkpoint": dict(checkpoint, age_ms=0), "ingress_gate": gate, "warmup": gate == "warmup",
                     "dedup": {"capacity": self.config.get("dedup_capacity_per_partition"),
                               "occupancy": self.dedup_occupancy}}
            if self.sessions:
                entry["replay_sessions"] = {session: {"last_seq": seq} for session, seq in self.last_seq.items()
                                            if session.endswith("/" + part_id)}
            partitions.append(entry)
        return 200, {"cluster": {"epoch": 1, "partitions": len(self.part_ids), "test_mode": self.test_mode},
                     "partitions": partitions}

    def _get_readyz(self, call):
        partitions = {}
        for part_id in self.part_ids:
            apply_lag, replication_lag = self.lags.get(part_id, (None, None))
            metrics = {k: v for k, v in (("apply_lag_ms", apply_lag), ("replication_lag_ms", replication_lag))
                       if v is not None}
            reasons = (["warmup"] if self.gate(part_id) == "warmup" else []) + list(self.reasons.get(part_id, []))
            partitions[part_id] = {"ready": not reasons, "reasons": reasons, "metrics": metrics}
        latest = list(self.barriers)[-1] if self.barriers else None
        return 200, {"ready": True, "activation_barrier_id": latest, "partitions": partitions}

    def gate(self, part_id):
        """A partition's ingress gate: the config's, else warmup for a wiped partition."""
        configured = (self.config.get("partitions") or {}).get(part_id, {}).get("ingress_gate")
        return configured or ("warmup" if part_id in self.wiped else "open")

    def _get_test_metrics_snapshot(self, call):
        part_id = (call.query or {}).get("part_id")
        if not self.test_mode:
            return 404, {"error": "not found", "status": 404}
        if part_id not in self.part_ids:
            return 404, {"error": "unknown partition %s" % part_id, "status": 404}
        return 200, self.snapshots.get(part_id) or {"part_id": part_id, "applied_index": 0, "metrics": {}, "late": {},
                                                    "digest": "sha256:empty"}

    # ------------------------------------------------------------------ audit log
    def _post_audit(self, call):
        record = {"id": "a-%d" % (len(self.audit) + 1), "ts": time.time(),
                  "actor": "spiffe://ceptra.test/role/%s" % self.role,
                  "kind": call.body["kind"], "details": call.body.get("details", {})}
        self.audit.append(record)
        return 201, record

    def _get_audit(self, call):
        query = call.query or {}
        records = [r for r in self.audit if "kind" not in query or r["kind"] == query["kind"]]
        records = [r for r in records if "since" not in query or r["ts"] >= float(query["since"])]
        return 200, {"records": copy.deepcopy(records)}

    # ------------------------------------------------------------------ append stream
    def _post_append_stream(self, call):
        part_id = call.params["part_id"]
        msgs = call.body
        self.requests.append((part_id, [m.get("replay_seq", m["event_id"]) for m in msgs]))
        answers = []
        for msg in msgs:
            assert "REPLAY" in msg["flags"]
            answer = self._append(part_id, msg)
            answers.append(answer)
            if answer["status"] != "Healthy" and answer.get("stop_stream", True):
                # like the lab: the rest of the stream is refused too
                answers.extend({"event_id": m["event_id"], "status": "TransientBackpressure",
                                "cep_status_reason": "TRANSIENT_RETRY"} for m in msgs[len(answers):])
                break
        return 200, answers

    def _append(self, part_id, msg):
        event_id = msg["event_id"]
        scripted = self.script.get(event_id)
        if scripted:
            answer = dict(scripted.pop(0))
            answer.setdefault("event_id", event_id)
            return answer
        hint = {"client_window_size": self.window, "retry_backoff_ms": 40}
        session = msg.get("replay_session")
        if self.sessions and session is not None:
            if msg["replay_seq"] <= self.last_seq.get(session, 0):
                return {"event_id": event_id, "status": "Healthy", "duplicate": True, "cep_credit_hint": hint}
            self.last_seq[session] = msg["replay_seq"]
        # contract section 5: event_id dedup for every event; sessions add replay_seq dedup on top
        if event_id in self.seen_ids and (self.event_id_dedup or not (self.sessions and session is not None)):
            return {"event_id": event_id, "status": "Healthy", "duplicate": True, "cep_credit_hint": hint}
        self.seen_ids.add(event_id)
        self.applied.setdefault(part_id, []).append(event_id)
        return {"event_id": event_id, "status": "Healthy", "cep_credit_hint": hint}


# ---------------------------------------------------------------------- the config manager's cluster

LANES_BUNDLE = {
    "bundle": {"name": "lanes_demo", "def_version": 1,
               "lane_domains": {"player_id": {"max_per_partition": 32}, "queue": {"max_per_partition": 2}}},
    "workflow": {"name": "lanes_demo", "phases": []},
}
LANES_QUERIES = [
    {"phase": "fast", "metric": "anti_cheat_flags", "aggregator": "sum", "labels": ["player_id"], "range_ms": 15000},
    {"phase": "fast", "metric": "flags_by_queue", "aggregator": "sum", "labels": ["player_id", "queue"], "range_ms": 15000},
    {"phase": "fast", "metric": "latency_p95", "aggregator": None, "labels": [], "range_ms": 15000},
]


def config_plane(expose_queries=False, **options):
    """A control plane as the config manager tests see it: the ``lanes_demo`` bundle active
    (its compiled queries listed in /v1/definitions with ``expose_queries``) and a validator
    that compiles any bundle to ``LANES_QUERIES`` without warnings."""
    plane = ControlPlane(**options)
    plane.add_bundle("lanes_demo@abc")
    plane.active = "lanes_demo@abc"
    if expose_queries:
        plane.active_extra = {"compiled_queries": LANES_QUERIES,
                              "lane_domains": LANES_BUNDLE["bundle"]["lane_domains"]}
    plane.compiled_queries = LANES_QUERIES
    plane.validate_warnings = []
    return plane


# ---------------------------------------------------------------------- metrics snapshots


def snapshot(part_id, value=1.0, digest="sha256:same"):
    """A metrics snapshot document of one partition holding one pane of metric ``m``."""
    return {"part_id": part_id, "applied_index": 7, "digest": digest,
            "metrics": {"m": {"raw": {"": {"1000": {"sum": value}}}, "compacted": {}}}, "late": {}}


def plane_with_snapshots(values):
    """A control plane with one partition per value, each with ``snapshot(part_id, value)``."""
    plane = ControlPlane(partitions=len(values))
    for part_id, value in enumerate(values):
        plane.snapshots[str(part_id)] = snapshot(str(part_id), value)
    return plane
