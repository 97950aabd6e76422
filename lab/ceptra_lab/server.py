"""The lab's aiohttp application: every route of the contract, identity, errors, idempotency.

Handlers validate input and call the Cluster (the ingest routes live in ingest.py, the
shared request helpers in http_common.py); every error leaves as the contract's body
`{"error", "status", ...}` (never a traceback), and a refused request changes nothing.
"""
from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict

from aiohttp import web

from ceptra_lab import metrics_text, testmode
from ceptra_lab.audit import parse_since
from ceptra_lab.auth import AuthError, Authenticator
from ceptra_lab.cluster import Cluster
from ceptra_lab.config_history import MAX_DURATION_MS, ConfigConflict, ConfigInvalid, changed_leaf_paths, impact_of
from ceptra_lab.definitions import BundleError, compile_bundle, lane_budget_violations, parse_bundle
from ceptra_lab.http_common import (
    AUTH,
    CLUSTER,
    DIALECT,
    IDEMPOTENCY,
    LOG,
    MAX_JSON_BODY,
    ApiError,
    actor,
    check_json_content_type,
    error_response,
    found,
    json_response,
    known_partition,
    loads,
    only_keys,
    partition_list,
    query_index,
    read_body,
    read_json_object,
    requires,
)
from ceptra_lab.ingest import post_append, post_append_stream

IDEMPOTENCY_TTL_S = 600.0
# Upper bounds of the test hooks (assumed, docs/lab.md): nothing a hook accepts may overflow
# the int64 nanosecond times the lab computes and reports.
MAX_OUTAGE_MS = 86_400_000
MAX_FAULT_APPLY_CAPACITY = 1e9
MAX_FAULT_NOT_LEADER = 1_000_000
IDEMPOTENCY_MAX_KEYS = 100000
IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_FORMAT = re.compile(r"[!-~]{1,%d}" % IDEMPOTENCY_KEY_MAX)
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
REFERENCE_REASON_NAMES = {"apply_lag": "apply_lag_exceeded", "replication_lag": "replication_lag_exceeded",
                          "checkpoint_age": "checkpoint_age_exceeded", "cert_expiry": "certificate_expiring",
                          "warmup": "warmup_pending"}


# ---- middlewares ------------------------------------------------------------------------------
@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Turn every failure into the contract's error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, **exc.details)
    except AuthError as exc:
        return error_response(exc.status, exc.message, **exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: f"no route {request.method} {request.path}", 405: f"method {request.method} not allowed on {request.path}",
                   413: "request body too large"}.get(exc.status, exc.reason)
        response = error_response(exc.status, message)
        if "Allow" in exc.headers:   # 405 names the methods the path has (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:  # a lab bug: answer 500 with the contract body, log the traceback server-side only
        LOG.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal lab error (see the lab's log)")


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Identify the caller and enforce the route's capability (401/403)."""
    capability = getattr(request.match_info.handler, "required_capability", None)
    if capability is None:
        return await handler(request)
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    identity = request.app[AUTH].identify(request.headers.get("Authorization"), peercert)
    Authenticator.require(identity, capability)
    request["identity"] = identity
    return await handler(request)


@web.middleware
async def faults_middleware(request: web.Request, handler):
    """The http_503_ratio fault: fail a share of calls (never /healthz or the fault switch itself)."""
    if request.path not in ("/healthz", "/v1/test/faults") and request.app[CLUSTER].should_fail_503():
        response = error_response(503, "injected fault: service unavailable, retry", retry_after_ms=50)
        response.headers["Retry-After"] = "0"
        return response
    return await handler(request)


@web.middleware
async def idempotency_middleware(request: web.Request, handler):
    """A repeated Idempotency-Key within 600 s returns the first response without acting again.

    Keys are scoped to the caller: the cache key is (identity, method, path, key), so another
    identity reusing a key acts on its own. The first request's fingerprint (query string and
    body) is kept with its answer; the same caller reusing the key for a different request
    gets 422 naming the key, and nothing is done.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method not in ("POST", "PATCH", "PUT", "DELETE") or request.path.endswith("/append-stream"):
        return await handler(request)
    if not IDEMPOTENCY_KEY_FORMAT.fullmatch(key):
        raise ApiError(400, f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters "
                            "(no spaces), e.g. a UUID")
    cache = request.app[IDEMPOTENCY]
    now = time.monotonic()
    # oldest first; the size cap bounds memory when every append carries a key (appends are
    # idempotent through event_id dedup anyway)
    while cache and (now - next(iter(cache.values()))[0] > IDEMPOTENCY_TTL_S or len(cache) > IDEMPOTENCY_MAX_KEYS):
        cache.popitem(last=False)
    identity = request.get("identity")
    cache_key = (identity.actor if identity is not None else "", request.method, request.path, key)
    fingerprint = hashlib.sha256(request.query_string.encode() + b"\n" + await read_body(request)).hexdigest()
    if cache_key in cache:
        _, first_fingerprint, status, body, headers = cache[cache_key]
        if first_fingerprint != fingerprint:
            raise ApiError(422, f"Idempotency-Key {key!r} was already used by this identity for a different "
                                f"{request.method} {request.path} request (other body or query) within "
                                f"{int(IDEMPOTENCY_TTL_S)} s; send a new key for a new request",
                           violations=[{"path": "Idempotency-Key", "message": f"key {key!r} reused with a different request"}],
                           idempotency_key=key)
        return web.Response(body=body, status=status, content_type="application/json",
                            headers={**headers, "Idempotent-Replayed": "true"})
    response = await handler(request)
    if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
        headers = {name: response.headers[name] for name in ("ETag",) if name in response.headers}
        cache[cache_key] = (now, fingerprint, response.status, bytes(response.body), headers)
    return response


# ---- probes and telemetry ----------------------------------------------------------------------------
@requires(None)
async def healthz(request: web.Request) -> web.Response:
    """200 while the process is alive."""
    return json_response({"status": "ok"})


@requires("read")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when ready, 503 otherwise, same body."""
    document = request.app[CLUSTER].readiness_document()
    if request.app[DIALECT] == "reference":
        document = reference_readiness(document)
    return json_response(document, status=200 if document["ready"] else 503)


def reference_readiness(document: dict) -> dict:
    """The reference implementation's readiness variant: partitions array, bare threshold, *_exceeded names."""
    rename = lambda reasons: [REFERENCE_REASON_NAMES.get(reason, reason) for reason in reasons]  # noqa: E731
    variant = dict(document)
    variant["threshold"] = document["threshold"]["healthy_partition_ratio"]
    variant["partitions"] = [{"partition_id": pid, "ready": doc["ready"], "critical": "durability_fence" in doc["reasons"],
                              "reasons": rename(doc["reasons"]), "metrics": doc["metrics"]}
                             for pid, doc in document["partitions"].items()]
    return variant


@requires("read")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    text = metrics_text.render(request.app[CLUSTER], request.app[DIALECT])
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@requires("read")
async def state(request: web.Request) -> web.Response:
    """The cluster and partition manifests."""
    return json_response(request.app[CLUSTER].state())


# ---- config -----------------------------------------------------------------------------------------------
@requires("read")
async def get_config(request: web.Request) -> web.Response:
    """The current config with its version as ETag."""
    store = request.app[CLUSTER].config
    return json_response({"version": store.version, "config": store.config}, headers={"ETag": f'"{store.version}"'})


def config_extra_checks(cluster: Cluster):
    """Cluster-aware config checks: dedup shrink under occupancy, lane budget of the active bundle."""
    def check(old: dict, new: dict) -> tuple[list, list]:
        violations, warnings = [], []
        old_capacity, new_capacity = old["dedup_capacity_per_partition"], new["dedup_capacity_per_partition"]
        if new_capacity < old_capacity:
            for part_id in cluster.part_ids:
                occupancy = cluster.partitions[part_id].manifest().get("dedup", {}).get("occupancy", 0)
                if occupancy > 0.7 * old_capacity:
                    violations.append({"path": "dedup_capacity_per_partition",
                                       "message": f"cannot shrink while partition {part_id} dedup occupancy is "
                                                  f"{occupancy}/{old_capacity} (> 70 %)"})
        if cluster.active_bundle_id and old.get("lane_domains") != new.get("lane_domains"):
            compiled = cluster.bundles[cluster.active_bundle_id]["compiled"]
            overrides = new.get("lane_domains", {})
            for item in lane_budget_violations(compiled, overrides):
                if item.get("severity") == "warning":
                    warnings.append(item["message"])
                else:
                    violations.append({"path": item["path"], "message": item["message"]})
        return violations, warnings
    return check


def config_result(store, previous: int, changed: list[str], warnings: list[str], **extra) -> web.Response:
    """The PATCH/rollback response body with the new ETag."""
    body = {"version": store.version, "previous_version": previous, "impact": impact_of(changed) if changed else "hot",
            "changed_keys": changed, "warnings": warnings, **extra}
    return json_response(body, headers={"ETag": f'"{store.version}"'})


@requires("control")
async def patch_config(request: web.Request) -> web.Response:
    """RFC 7396 merge patch under optional If-Match."""
    cluster = request.app[CLUSTER]
    store = cluster.config
    check_json_content_type(request, {"application/merge-patch+json"})
    try:
        store.check_if_match(request.headers.get("If-Match"))
    except ConfigConflict as exc:
        raise ApiError(412, str(exc), current_version=store.version) from None
    body = await read_body(request)
    try:
        patch = loads(body)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    try:
        new_config, changed, warnings = store.preview(patch, config_extra_checks(cluster))
    except ConfigInvalid as exc:
        raise ApiError(422, "config validation failed: " + "; ".join(f"{v['path']}: {v['message']}" for v in exc.violations),
                       violations=exc.violations) from None
    previous = store.version
    if changed:
        store.commit(new_config, actor(request), "patch")
        cluster.audit.append(actor(request), "config_change", {
            "version": store.version, "previous_version": previous, "changed_keys": changed, "patch": patch})
    return config_result(store, previous, changed, warnings)


@requires("control")
async def rollback_config(request: web.Request) -> web.Response:
    """Restore version V's blob as a new version."""
    cluster = request.app[CLUSTER]
    store = cluster.config
    target = query_index(request, "to", None, "the config version to restore")
    blob = store.blob(target)
    if blob is None:
        raise ApiError(404, f"config version {target} does not exist (current is {store.version})")
    if target == store.version:
        raise ApiError(409, f"version {target} is the current version; nothing to roll back")
    previous = store.version
    try:
        blob, changed, warnings = store.preview_rollback(blob, config_extra_checks(cluster))
    except ConfigInvalid as exc:
        raise ApiError(422, f"config version {target} cannot be restored: "
                            + "; ".join(f"{v['path']}: {v['message']}" for v in exc.violations),
                       violations=exc.violations) from None
    store.commit(blob, actor(request), f"rollback to {target}")
    cluster.audit.append(actor(request), "config_rollback", {
        "version": store.version, "previous_version": previous, "to": target, "changed_keys": changed})
    return config_result(store, previous, changed, warnings, rolled_back_to=target)


# ---- definitions, activation, replay -----------------------------------------------------------------------
async def read_bundle(request: web.Request):
    """Parse and compile an uploaded bundle (YAML or JSON); 422 with violations on errors."""
    check_json_content_type(request, YAML_TYPES)
    body = await read_body(request)
    if not body.strip():
        raise ApiError(400, "request body is empty; send a bundle (YAML or JSON)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bundle is not UTF-8 text") from None
    cluster = request.app[CLUSTER]
    try:
        compiled = compile_bundle(parse_bundle(text), cluster.config.config.get("lane_domains") or None)
    except BundleError as exc:
        violations = getattr(exc, "violations", None) or [{"path": "", "message": str(exc)}]
        raise ApiError(422, f"bundle rejected: {str(exc) or violations[0]['message']}", violations=violations) from None
    return compiled, text


@requires("read")
async def validate_definitions(request: web.Request) -> web.Response:
    """Validate a bundle without storing it."""
    compiled, _ = await read_bundle(request)
    return json_response(compiled.validation_report())


@requires("control")
async def upload_definitions(request: web.Request) -> web.Response:
    """Upload a bundle: partitions prepare and shadow-apply it; identical re-upload is a no-op."""
    compiled, text = await read_bundle(request)
    record, created = request.app[CLUSTER].upload_bundle(compiled, text, actor(request))
    state_name = "active" if record["bundle_id"] == request.app[CLUSTER].active_bundle_id else "distributed"
    return json_response({"bundle_id": compiled.bundle_id, "def_version": compiled.def_version,
                          "policy_version": compiled.policy_version, "state": state_name, "created": created,
                          "needs_replay": bool(compiled.needs_replay), "warnings": list(compiled.warnings)})


@requires("read")
async def get_definitions(request: web.Request) -> web.Response:
    """Active bundle and every bundle's per-partition shadow state."""
    return json_response(request.app[CLUSTER].definitions_document())


@requires("control")
async def post_activate(request: web.Request) -> web.Response:
    """Create, update or abort an activation barrier."""
    cluster = request.app[CLUSTER]
    body = await read_json_object(request)
    only_keys(body, ("bundle_id", "readiness_threshold", "exclude_partitions", "abort"))
    bundle_id = body.get("bundle_id")
    if not isinstance(bundle_id, str) or not bundle_id:
        raise ApiError(422, "bundle_id (string) is required", violations=[{"path": "bundle_id", "message": "required string"}])
    if bundle_id not in cluster.bundles:
        raise ApiError(404, f"unknown bundle {bundle_id!r}; upload it with POST /v1/definitions first")
    threshold = body.get("readiness_threshold", 1.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ApiError(422, "readiness_threshold must be a number in (0, 1]",
                       violations=[{"path": "readiness_threshold", "message": "must be a number in (0, 1]"}])
    exclude = partition_list(cluster, body.get("exclude_partitions", []), "exclude_partitions")
    abort = body.get("abort", False)
    if not isinstance(abort, bool):
        raise ApiError(422, "abort must be true or false", violations=[{"path": "abort", "message": "must be a boolean"}])
    barrier = cluster.activate(bundle_id, float(threshold), exclude, abort, actor(request))
    if barrier is None:
        raise ApiError(404, f"no activation barrier for bundle {bundle_id!r} to abort")
    return json_response(cluster.barrier_view(barrier))


@requires("read")
async def get_activation(request: web.Request) -> web.Response:
    """One barrier document."""
    cluster = request.app[CLUSTER]
    barrier = found(cluster.barriers, request.match_info["barrier_id"], "activation barrier")
    return json_response(cluster.barrier_view(barrier))


@requires("control")
async def post_replay(request: web.Request) -> web.Response:
    """Start a WAL replay job from the latest full checkpoint."""
    cluster = request.app[CLUSTER]
    body = await read_json_object(request)
    only_keys(body, ("part_ids", "from", "reason"))
    part_ids = partition_list(cluster, body["part_ids"], "part_ids") if "part_ids" in body else list(cluster.part_ids)
    if not part_ids:
        raise ApiError(422, "part_ids is empty", violations=[{"path": "part_ids", "message": "name at least one partition"}])
    source = body.get("from", "latest_full_checkpoint")
    if source != "latest_full_checkpoint":
        raise ApiError(422, "from must be 'latest_full_checkpoint'", violations=[{"path": "from", "message": "unsupported"}])
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(422, "reason must be a string", violations=[{"path": "reason", "message": "must be a string"}])
    job = cluster.start_replay(part_ids, source, reason, actor(request))
    return json_response({"job_id": job["job_id"], "state": job["state"]})


@requires("read")
async def get_replay(request: web.Request) -> web.Response:
    """One replay job document."""
    cluster = request.app[CLUSTER]
    job = found(cluster.replay_jobs, request.match_info["job_id"], "replay job")
    return json_response(cluster.job_view(job))


# ---- audit -------------------------------------------------------------------------------------------------
@requires("read")
async def get_audit(request: web.Request) -> web.Response:
    """Audit records, optionally filtered by since and kind."""
    since = None
    if "since" in request.query:
        try:
            since = parse_since(request.query["since"])
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    kind = request.query.get("kind") or None
    return json_response({"records": request.app[CLUSTER].audit.query(since, kind)})


@requires("control")
async def post_audit(request: web.Request) -> web.Response:
    """Automation's own audit record."""
    body = await read_json_object(request)
    only_keys(body, ("kind", "details"))
    kind, details = body.get("kind"), body.get("details", {})
    if not isinstance(kind, str) or not kind.strip():
        raise ApiError(422, "kind must be a non-empty string", violations=[{"path": "kind", "message": "required string"}])
    if not isinstance(details, dict):
        raise ApiError(422, "details must be an object", violations=[{"path": "details", "message": "must be an object"}])
    record = request.app[CLUSTER].audit.append(actor(request), kind, details)
    return json_response(record, status=201)


# ---- test RPCs (test mode only) -------------------------------------------------------------------------------
FAULT_KEYS = ("part_id", "apply_capacity", "replication_lag_ms", "http_503_ratio", "shadow_state", "not_leader")


@requires("read")
async def test_metrics_snapshot(request: web.Request) -> web.Response:
    """Deterministic aggregate dump of one partition with its digest."""
    cluster = request.app[CLUSTER]
    part_id = testmode.query_partition(request)
    snapshot = dict(cluster.partitions[part_id].metrics_snapshot())
    snapshot["part_id"] = part_id
    return json_response(snapshot)


@requires("test_hooks")
async def test_faults(request: web.Request) -> web.Response:
    """GET: the fault table; POST: change it."""
    cluster = request.app[CLUSTER]
    if request.method == "POST":
        body = await read_json_object(request)
        only_keys(body, FAULT_KEYS)
        problems = []
        if "part_id" in body:
            known_partition(cluster, body["part_id"])
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if "apply_capacity" in body and body["apply_capacity"] is not None and not (
                number(body["apply_capacity"]) and 0 < body["apply_capacity"] <= MAX_FAULT_APPLY_CAPACITY):
            problems.append({"path": "apply_capacity",
                             "message": f"must be a number in (0, {MAX_FAULT_APPLY_CAPACITY:.0f}] events/s or null"})
        if "replication_lag_ms" in body and not (number(body["replication_lag_ms"])
                                                 and 0 <= body["replication_lag_ms"] <= MAX_DURATION_MS):
            problems.append({"path": "replication_lag_ms", "message": f"must be a number in [0, {MAX_DURATION_MS}]"})
        if "http_503_ratio" in body and not (number(body["http_503_ratio"]) and 0 <= body["http_503_ratio"] <= 1):
            problems.append({"path": "http_503_ratio", "message": "must be a number in [0, 1]"})
        if "shadow_state" in body and body["shadow_state"] not in (None, "SHADOW_FAILED", "SHADOW_TIMEOUT"):
            problems.append({"path": "shadow_state", "message": "must be SHADOW_FAILED, SHADOW_TIMEOUT or null"})
        if "not_leader" in body and not (isinstance(body["not_leader"], int) and not isinstance(body["not_leader"], bool)
                                         and 0 <= body["not_leader"] <= MAX_FAULT_NOT_LEADER):
            problems.append({"path": "not_leader", "message": f"must be an integer in [0, {MAX_FAULT_NOT_LEADER}]"})
        if problems:
            raise ApiError(422, "invalid fault settings", violations=problems)
        cluster.set_faults(body)
        cluster.audit.append(actor(request), "fault", body)
    return json_response(cluster.fault_table())


@requires("test_hooks")
async def test_outage(request: web.Request) -> web.Response:
    """Fence partitions for a time window."""
    cluster = request.app[CLUSTER]
    body = await read_json_object(request)
    only_keys(body, ("part_ids", "duration_ms"))
    part_ids = partition_list(cluster, body["part_ids"], "part_ids") if "part_ids" in body else list(cluster.part_ids)
    duration = body.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 < duration <= MAX_OUTAGE_MS:
        message = f"must be an integer in [1, {MAX_OUTAGE_MS}] (at most 24 h)"
        raise ApiError(422, f"duration_ms {message}", violations=[{"path": "duration_ms", "message": message}])
    return json_response(cluster.start_outage(part_ids, duration, actor(request)))


@requires("test_hooks")
async def test_wipe(request: web.Request) -> web.Response:
    """Empty a partition's WAL and state."""
    cluster = request.app[CLUSTER]
    body = await read_json_object(request)
    only_keys(body, ("part_id", "drop_checkpoint"))
    if "part_id" not in body:
        raise ApiError(422, "part_id is required", violations=[{"path": "part_id", "message": "required"}])
    part_id = known_partition(cluster, body["part_id"])
    drop = body.get("drop_checkpoint", False)
    if not isinstance(drop, bool):
        raise ApiError(422, "drop_checkpoint must be true or false",
                       violations=[{"path": "drop_checkpoint", "message": "must be a boolean"}])
    details = cluster.wipe(part_id, actor(request), drop_checkpoint=drop)
    return json_response({"part_id": part_id, "wiped": True, "baseline": details, "manifest": cluster.manifest(part_id)})


async def _targets(request: web.Request) -> list[str]:
    cluster = request.app[CLUSTER]
    body = await read_json_object(request, allow_empty=True)
    only_keys(body, ("part_id",))
    return [known_partition(cluster, body["part_id"])] if "part_id" in body else list(cluster.part_ids)


@requires("test_hooks")
async def test_compact(request: web.Request) -> web.Response:
    """Run the compaction job now."""
    targets = await _targets(request)
    return json_response({"compacted": request.app[CLUSTER].compact_all(targets)})


@requires("test_hooks")
async def test_checkpoint(request: web.Request) -> web.Response:
    """Take a full checkpoint now."""
    targets = await _targets(request)
    cluster = request.app[CLUSTER]
    cluster.checkpoint_all(targets)
    return json_response({"checkpointed": {pid: cluster.manifest(pid).get("checkpoint") for pid in targets}})


def make_app(cluster: Cluster, authenticator: Authenticator, dialect: str = "spec") -> web.Application:
    """Build the aiohttp application for a cluster."""
    app = web.Application(client_max_size=MAX_JSON_BODY + 1,
                          middlewares=[errors_middleware, auth_middleware, faults_middleware, idempotency_middleware])
    app[CLUSTER], app[AUTH], app[DIALECT], app[IDEMPOTENCY] = cluster, authenticator, dialect, OrderedDict()
    routes = [("GET", "/healthz", healthz), ("GET", "/readyz", readyz), ("GET", "/metrics", metrics),
              ("GET", "/v1/state", state), ("GET", "/v1/config", get_config), ("PATCH", "/v1/config", patch_config),
              ("POST", "/v1/config/rollback", rollback_config), ("GET", "/v1/definitions", get_definitions),
              ("POST", "/v1/definitions", upload_definitions), ("POST", "/v1/definitions/validate", validate_definitions),
              ("POST", "/v1/activate", post_activate), ("GET", "/v1/activate/{barrier_id}", get_activation),
              ("POST", "/v1/replay", post_replay), ("GET", "/v1/replay/{job_id}", get_replay),
              ("GET", "/v1/audit", get_audit), ("POST", "/v1/audit", post_audit), ("POST", "/append", post_append),
              ("POST", "/v1/partitions/{part_id}/append-stream", post_append_stream)]
    if cluster.test_mode:
        routes += [("GET", "/v1/test/metrics-snapshot", test_metrics_snapshot), ("GET", "/v1/test/faults", test_faults),
                   ("POST", "/v1/test/faults", test_faults), ("POST", "/v1/test/outage", test_outage),
                   ("POST", "/v1/test/wipe", test_wipe), ("POST", "/v1/test/compact", test_compact),
                   ("POST", "/v1/test/checkpoint", test_checkpoint)] + testmode.ROUTES
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_startup(app: web.Application) -> None:
    app[CLUSTER].start()


async def _on_shutdown(app: web.Application) -> None:
    await app[CLUSTER].stop()
