"""A fake CEPtra control plane for the control-plane unit tests (and a few tests of the fake itself).

``FakeCluster`` answers the client API of ``_client.CeptraClient`` (``request``, ``get_json``,
``close``) from in-memory state that follows the contract: definitions with per-partition
shadows, activation barriers, WAL replay jobs, /v1/state and metrics snapshots. It returns real
``_client.Response`` objects and raises the real ``CeptraError`` for unexpected statuses.
"""

import copy
import json

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError, Headers, Response
from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import expected_bundle_id

READY_SHADOW = {"shadow_apply_state": "Ready", "cep_shadow_state": "SHADOW_READY", "needs_replay": False,
                "warmup_ready_ratio": 1.0}
PENDING_SHADOW = {"shadow_apply_state": "Pending", "cep_shadow_state": "SHADOW_PENDING", "needs_replay": False,
                  "warmup_ready_ratio": 0.0}
WAITING_SHADOW = {"shadow_apply_state": "Pending", "cep_shadow_state": "SHADOW_WAITING_FOR_WAL",
                  "needs_replay": True, "warmup_ready_ratio": 0.0}
FAILED_SHADOW = {"shadow_apply_state": "Expired", "cep_shadow_state": "SHADOW_FAILED", "needs_replay": False,
                 "warmup_ready_ratio": 0.4}


def _needs_replay(bundle):
    return '"upgrade": false' in json.dumps(bundle)


class FakeCluster:
    """In-memory control plane; ``calls`` records (method, route, params, query, body)."""

    def __init__(self, partitions=4, test_mode=True, report_bundle_id=True):
        self.part_ids = [str(i) for i in range(partitions)]
        self.test_mode = test_mode
        self.report_bundle_id = report_bundle_id
        self.bundles = {}           # bundle_id -> entry (insertion ordered)
        self.active = None
        self.barriers = {}
        self.jobs = {}
        self.calls = []
        self.validate_violations = None
        self.new_shadow = PENDING_SHADOW   # shadow every partition gets on upload (needs_replay overrides)
        self.warm_after_polls = None       # GET definitions polls after which pending shadows turn ready
        self.job_polls = 1                 # GET replay_job polls until a job completes
        self.job_fails = False
        self.snapshots = {}
        self.closed = False
        self._definition_polls = 0

    # ------------------------------------------------------------------ client API
    def request(self, method, route, *, params=None, query=None, body=None, headers=None, idempotency_key=None,
                expected=(200,)):
        self.calls.append((method, route, copy.deepcopy(params), copy.deepcopy(query), copy.deepcopy(body)))
        handler = getattr(self, "_%s_%s" % (method.lower(), route), None)
        if handler is None:
            status, doc = 404, {"error": "no route %s %s" % (method, route), "status": 404}
        else:
            status, doc = handler(params or {}, query or {}, body)
        response = Response(status, Headers(), json.dumps(doc).encode("utf-8"))
        if status not in expected:
            raise CeptraError("%s %s answered %d: %s" % (method, route, status, doc.get("error")), status=status,
                              body=doc, route=route, method=method)
        return response

    def get_json(self, route, **kw):
        return self.request("GET", route, **kw).json

    def close(self):
        self.closed = True

    def writes(self, route=None):
        """Calls other than GET (optionally to one route)."""
        return [c for c in self.calls if c[0] != "GET" and (route is None or c[1] == route)]

    # ------------------------------------------------------------------ test helpers
    def add_bundle(self, bundle_id, shadow=None, **per_partition):
        """Register a bundle directly (shadows ready by default); ``per_partition`` maps "p<id>" to a shadow."""
        shadow = shadow or READY_SHADOW
        partitions = {p: dict(per_partition.get("p" + p, shadow)) for p in self.part_ids}
        self.bundles[bundle_id] = {"bundle_id": bundle_id, "def_version": 1, "policy_version": 1,
                                   "state": "distributed", "partitions": partitions}
        return self.bundles[bundle_id]

    def set_shadow(self, bundle_id, part_id, shadow):
        self.bundles[bundle_id]["partitions"][part_id] = dict(shadow)

    # ------------------------------------------------------------------ definitions
    def _post_definitions_validate(self, params, query, body):
        if isinstance(body, str):
            return 422, {"error": "bundle does not parse", "status": 422,
                         "violations": [{"path": "body", "message": "YAML syntax error at line 3 (from the cluster)"}]}
        if self.validate_violations:
            return 422, {"error": "invalid bundle", "status": 422, "violations": self.validate_violations}
        report = {"bundle_name": body.get("bundle", {}).get("name"), "def_version": body.get("bundle", {}).get("def_version"),
                  "policy_version": 1, "compiled_queries": [], "lane_report": {"projections": [], "total_projected_lanes": 0},
                  "warnings": ["lanes at 48"]}
        if self.report_bundle_id:
            report["bundle_id"] = expected_bundle_id(body)
        return 200, report

    def _get_definitions(self, params, query, body):
        self._definition_polls += 1
        if self.warm_after_polls is not None and self._definition_polls >= self.warm_after_polls:
            for entry in self.bundles.values():
                for part_id, shadow in entry["partitions"].items():
                    if shadow["cep_shadow_state"] in ("SHADOW_PENDING", "SHADOW_REPLAYING"):
                        entry["partitions"][part_id] = dict(READY_SHADOW)
        active = None
        if self.active:
            active = {"bundle_id": self.active, "def_version": 1, "policy_version": 1}
        bundles = []
        for entry in self.bundles.values():
            entry = copy.deepcopy(entry)
            if entry["bundle_id"] == self.active:
                entry["state"] = "active"
            bundles.append(entry)
        return 200, {"active": active, "bundles": bundles}

    def _post_definitions(self, params, query, body):
        if self.validate_violations:
            return 422, {"error": "invalid bundle", "status": 422, "violations": self.validate_violations}
        bundle_id = expected_bundle_id(body)
        if bundle_id not in self.bundles:
            shadow = WAITING_SHADOW if _needs_replay(body) else self.new_shadow
            self.add_bundle(bundle_id, shadow)
        return 200, {"bundle_id": bundle_id, "def_version": 1, "state": "distributed"}

    # ------------------------------------------------------------------ activation
    def _evaluate(self, barrier):
        entry = self.bundles[barrier["bundle_id"]]
        targeted = [p for p in self.part_ids if p not in barrier["exclude_partitions"]]
        missing = [p for p in targeted if entry["partitions"][p]["cep_shadow_state"] != "SHADOW_READY"]
        barrier["missing_partitions"] = missing
        if not missing:
            barrier["state"] = "committed"
            barrier["barrier_index"] = {p: 100 for p in targeted}
            self.active = barrier["bundle_id"]

    def _post_activate(self, params, query, body):
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

    def _get_activation(self, params, query, body):
        barrier = self.barriers.get(params["barrier_id"])
        if barrier is None:
            return 404, {"error": "no such barrier", "status": 404}
        if barrier["state"] == "pending":
            self._evaluate(barrier)
        return 200, dict(barrier)

    def _get_readyz(self, params, query, body):
        latest = list(self.barriers)[-1] if self.barriers else None
        return 503, {"ready": False, "activation_barrier_id": latest, "partitions": {}}

    # ------------------------------------------------------------------ replay jobs
    def _post_replay_jobs(self, params, query, body):
        job_id = "replay-%d" % (len(self.jobs) + 1)
        self.jobs[job_id] = {"job_id": job_id, "state": "running", "polls": 0,
                             "partitions": {p: {"from_index": 10, "to_index": 50, "replayed_index": 10}
                                            for p in body["part_ids"]}}
        return 202, {"job_id": job_id, "state": "running"}

    def _get_replay_job(self, params, query, body):
        job = self.jobs[params["job_id"]]
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

    # ------------------------------------------------------------------ state and snapshots
    def _get_state(self, params, query, body):
        return 200, {"cluster": {"epoch": 1, "partitions": len(self.part_ids), "test_mode": self.test_mode},
                     "partitions": [{"part_id": p} for p in self.part_ids]}

    def _get_test_metrics_snapshot(self, params, query, body):
        part_id = query.get("part_id")
        if not self.test_mode:
            return 404, {"error": "not found", "status": 404}
        if part_id not in self.part_ids:
            return 404, {"error": "unknown partition %s" % part_id, "status": 404}
        return 200, self.snapshots.get(part_id) or {"part_id": part_id, "applied_index": 0, "metrics": {}, "late": {},
                                                    "digest": "sha256:empty"}


# ---------------------------------------------------------------------- tests of the fake itself


def test_fake_raises_the_real_error_for_unexpected_statuses():
    cluster = FakeCluster()
    with pytest.raises(CeptraError) as caught:
        cluster.request("GET", "activation", params={"barrier_id": "nope"})
    assert caught.value.status == 404


def test_fake_upload_is_idempotent_and_marks_upgrade_false_bundles():
    cluster = FakeCluster()
    bundle = {"bundle": {"name": "b"}, "q": {"upgrade": False}}
    first = cluster.request("POST", "definitions", body=bundle).json
    second = cluster.request("POST", "definitions", body=bundle).json
    assert first == second
    assert list(cluster.bundles) == [first["bundle_id"]]
    assert cluster.bundles[first["bundle_id"]]["partitions"]["0"]["needs_replay"] is True
