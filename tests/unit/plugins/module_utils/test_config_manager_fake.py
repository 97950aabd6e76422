"""An in-memory CEPtra control plane for config manager unit tests (no HTTP).

It implements the client seam (``request``/``get_json``) over versioned config with ETag,
If-Match/412, RFC 7396 merge (or the reference's top-level merge), 422 bounds, the
definitions/validate, state and audit routes, and records every call.
"""

import copy
import json

from ceptra_lab.config_history import merge_patch   # RFC 7396, as the lab applies it

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError

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

BUNDLE = {
    "bundle": {"name": "lanes_demo", "def_version": 1,
               "lane_domains": {"player_id": {"max_per_partition": 32}, "queue": {"max_per_partition": 2}}},
    "workflow": {"name": "lanes_demo", "phases": []},
}
COMPILED = [
    {"phase": "fast", "metric": "anti_cheat_flags", "aggregator": "sum", "labels": ["player_id"], "range_ms": 15000},
    {"phase": "fast", "metric": "flags_by_queue", "aggregator": "sum", "labels": ["player_id", "queue"], "range_ms": 15000},
    {"phase": "fast", "metric": "latency_p95", "aggregator": None, "labels": [], "range_ms": 15000},
]


class FakeResponse:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.json = body
        self.text = json.dumps(body)
        self.headers = headers or {}


class FakeControlPlane:
    """The fake client. ``top_level_merge`` switches to the reference server's merge rule.

    ``before_patch`` hooks (callables taking the fake) run once each, in order, right before
    the next PATCHes are handled: a way to simulate another writer racing us.
    """

    def __init__(self, config=None, top_level_merge=False, role="operator", partitions=4, expose_queries=False):
        self.versions = [copy.deepcopy(config or DEFAULT_CONFIG)]
        self.top_level_merge = top_level_merge
        self.role = role
        self.partitions = partitions
        self.expose_queries = expose_queries
        self.calls = []
        self.audit = []
        self.before_patch = []
        self.dedup_occupancy = 0

    # ---- state helpers for tests
    @property
    def version(self):
        return len(self.versions)

    @property
    def config(self):
        return self.versions[-1]

    def external_write(self, patch, actor="someone-else"):
        """Another writer changes the config (no If-Match)."""
        self._apply(patch, actor)

    @property
    def patches(self):
        return [call for call in self.calls if call[0] == "PATCH"]

    # ---- client seam
    def close(self):
        self.closed = True

    def get_json(self, route, **kw):
        return self.request("GET", route, **kw).json

    def request(self, method, route, *, params=None, query=None, body=None, headers=None,
                idempotency_key=None, expected=(200,)):
        self.calls.append((method, route, copy.deepcopy(body), dict(headers or {})))
        status, payload, extra = self._handle(method, route, body, headers or {})
        if status not in expected:
            raise CeptraError("%s %s failed with %d: %s" % (method, route, status, payload.get("error")),
                              status=status, body=payload, route=route)
        return FakeResponse(status, payload, extra)

    def _handle(self, method, route, body, headers):
        if method != "GET" and self.role == "observer":
            return 403, {"error": "identity lacks role operator", "status": 403}, {}
        if route == "config" and method == "GET":
            return 200, {"version": self.version, "config": copy.deepcopy(self.config)}, {"ETag": '"%d"' % self.version}
        if route == "config" and method == "PATCH":
            while self.before_patch:
                self.before_patch.pop(0)(self)
                break
            if headers.get("If-Match") not in (None, '"%d"' % self.version):
                return 412, {"error": "version moved", "status": 412}, {}
            new = self._merged(body)
            violations = []
            cadence = new.get("checkpoint_full_interval_ms")
            if not 15000 <= cadence <= 300000:
                violations.append({"path": "checkpoint_full_interval_ms", "message": "out of bounds"})
            if violations:
                return 422, {"error": "invalid", "status": 422, "violations": violations}, {}
            previous = self.version
            changed = self._apply(body, "operator")
            return 200, {"version": self.version, "previous_version": previous, "impact": "hot",
                         "changed_keys": changed}, {}
        if route == "definitions" and method == "GET":
            active = {"bundle_id": "lanes_demo@abc", "def_version": 1, "policy_version": 1}
            if self.expose_queries:
                active.update(compiled_queries=COMPILED, lane_domains=BUNDLE["bundle"]["lane_domains"])
            return 200, {"active": active, "bundles": [dict(active, state="active", partitions={})]}, {}
        if route == "definitions_validate" and method == "POST":
            return 200, {"bundle_name": "lanes_demo", "def_version": 1, "compiled_queries": COMPILED,
                         "lane_report": {"projections": [], "total_projected_lanes": 0}, "warnings": []}, {}
        if route == "state" and method == "GET":
            parts = [{"part_id": str(i), "dedup": {"capacity": self.config["dedup_capacity_per_partition"],
                                                   "occupancy": self.dedup_occupancy}} for i in range(self.partitions)]
            return 200, {"cluster": {"partitions": self.partitions}, "partitions": parts}, {}
        if route == "audit" and method == "POST":
            self.audit.append(copy.deepcopy(body))
            return 200, {"id": len(self.audit)}, {}
        return 404, {"error": "no route", "status": 404}, {}

    def _merged(self, patch):
        if self.top_level_merge:
            new = copy.deepcopy(self.config)
            for key, value in patch.items():
                if value is None:
                    new.pop(key, None)
                else:
                    new[key] = copy.deepcopy(value)  # nested nulls are stored as they are
            return new
        return merge_patch(self.config, patch)

    def _apply(self, patch, actor):
        new = self._merged(patch)
        if new == self.config:
            return []
        changed = sorted(key for key in set(new) | set(self.config) if new.get(key) != self.config.get(key))
        self.versions.append(new)
        return changed
