# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: tolerant reader of /readyz (spec shape and known variants).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal tolerant reader of ``/readyz`` (not a public API).

:func:`normalize_readiness` turns the spec shape and every variant of the contract
(section 2) into one document::

    {"ready": bool, "http_status": int|None,
     "definition_bundle_id", "activation_barrier_id", "shadow_apply_state",
     "warmup_ready_ratio", "partition_ready_ratio", "readiness_digest",
     "threshold": {"healthy_partition_ratio": float},
     "reasons": [...],                       # cluster reasons, spec vocabulary
     "partitions": {"<part_id>": {"ready": bool, "reasons": [...], "critical": bool,
                                  "metrics": {"apply_lag_ms": .., ...},
                                  "shadow_apply_state": str|None, "warmup_ready_ratio": float|None}},
     "not_ready_partitions": ["<part_id>", ...]}

Unknown fields are ignored (never an error).
"""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions as _partitions_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._metrics import resolve_name

DEFAULT_HEALTHY_PARTITION_RATIO = 0.99

# reference-implementation reason names -> spec vocabulary
REASON_ALIASES = {
    "apply_lag_exceeded": "apply_lag",
    "replication_lag_exceeded": "replication_lag",
    "checkpoint_age_exceeded": "checkpoint_age",
    "certificate_expiring": "cert_expiry",
    "cert_expiring": "cert_expiry",
    "warmup_pending": "warmup",
    "raft_quorum_lost": "raft_quorum",
    "watermark_stalled": "watermark_stall",
}

_SHADOW_READY = ("ready", "shadow_ready")
_TOP_FIELDS = ("definition_bundle_id", "activation_barrier_id", "shadow_apply_state", "warmup_ready_ratio",
               "partition_ready_ratio", "readiness_digest")


def normalize_reason(reason) -> str | None:
    """One reason in the spec vocabulary (strings, or objects with reason/code/name)."""
    if isinstance(reason, dict):
        reason = reason.get("reason") or reason.get("code") or reason.get("name")
    if reason is None:
        return None
    text = str(reason).strip()
    lowered = text.lower()
    return REASON_ALIASES.get(lowered, lowered)


def _reasons(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return []
    out = []
    for item in value:
        reason = normalize_reason(item)
        if reason and reason not in out:
            out.append(reason)
    return out


def _number(value):
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _partition_metrics(entry: dict) -> dict:
    """Lag and similar numbers of one partition, canonical names, ms units."""
    metrics = {}
    sources = [entry]
    if isinstance(entry.get("metrics"), dict):
        sources.append(entry["metrics"])  # nested values win over top-level ones
    for source in sources:
        for key, value in source.items():
            number = _number(value)
            if number is None or isinstance(value, bool) or key in ("ready", "critical", "warmup_ready_ratio"):
                continue
            canonical, factor = resolve_name(key)
            if source is entry and canonical == key and not key.endswith(("_ms", "_ratio", "_ns")):
                continue  # top-level numbers like partition_id are not metrics
            metrics[canonical] = number * factor
    return metrics


def _partition(entry, shadow_only=False) -> dict:
    if not isinstance(entry, dict):
        # {"3": true} style: a bare readiness flag
        return {"ready": bool(entry), "reasons": [], "critical": False, "metrics": {},
                "shadow_apply_state": None, "warmup_ready_ratio": None}
    shadow = entry.get("shadow_apply_state")
    ratio = _number(entry.get("warmup_ready_ratio"))
    reasons = _reasons(entry.get("reasons", entry.get("reason")))
    if "ready" in entry:
        ready = bool(entry.get("ready"))
    elif shadow_only or shadow is not None or ratio is not None:
        # Clustor readiness list: ready once the shadow is Ready and fully warmed up.
        ready = (shadow is None or str(shadow).lower() in _SHADOW_READY) and (ratio is None or ratio >= 1.0)
    else:
        ready = not reasons
    if not ready and not reasons and (shadow is not None or ratio is not None):
        reasons = ["definition_warmup_pending"]
    return {
        "ready": ready,
        "reasons": reasons,
        "critical": bool(entry.get("critical", False)),
        "metrics": _partition_metrics(entry),
        "shadow_apply_state": shadow,
        "warmup_ready_ratio": ratio,
    }


def _partitions(body: dict) -> dict:
    partitions = {pid: _partition(entry) for pid, entry in _partitions_mod.items(body.get("partitions"))}
    clustor = body.get("readiness")
    if isinstance(clustor, list):
        for pid, entry in _partitions_mod.items(clustor):
            merged = _partition(entry, shadow_only=True)
            if pid in partitions:
                # both present: a partition is ready only if both views say so
                known = partitions[pid]
                known["ready"] = known["ready"] and merged["ready"]
                known["reasons"] += [r for r in merged["reasons"] if r not in known["reasons"]]
                known["shadow_apply_state"] = known["shadow_apply_state"] or merged["shadow_apply_state"]
                if known["warmup_ready_ratio"] is None:
                    known["warmup_ready_ratio"] = merged["warmup_ready_ratio"]
            else:
                partitions[pid] = merged
    return partitions


def _threshold(body: dict) -> dict:
    value = body.get("threshold")
    ratio = None
    if isinstance(value, dict):
        ratio = _number(value.get("healthy_partition_ratio", value.get("ratio")))
    else:
        ratio = _number(value)
    return {"healthy_partition_ratio": DEFAULT_HEALTHY_PARTITION_RATIO if ratio is None else ratio}


def _barrier_id(body: dict):
    """The cluster's current activation barrier: spec ``activation_barrier_id``, else the
    reference implementation's ``barrier_id`` or ``barrier: {"barrier_id": ..}`` object."""
    for key in ("activation_barrier_id", "barrier_id"):
        if body.get(key) is not None:
            return body.get(key)
    barrier = body.get("barrier")
    if isinstance(barrier, dict):
        return barrier.get("barrier_id", barrier.get("id"))
    if isinstance(barrier, str):
        return barrier
    return None


def normalize_readiness(body, http_status=None) -> dict:
    """Normalize a ``/readyz`` body (any known variant; 200 or 503) into the module's shape."""
    if not isinstance(body, dict):
        body = {}
    partitions = _partitions(body)
    threshold = _threshold(body)
    doc = {key: body.get(key) for key in _TOP_FIELDS}
    if doc["definition_bundle_id"] is None and body.get("bundle_id") is not None:
        doc["definition_bundle_id"] = body.get("bundle_id")
    doc["activation_barrier_id"] = _barrier_id(body)
    for key in ("warmup_ready_ratio", "partition_ready_ratio"):
        doc[key] = _number(doc[key])
    if doc["partition_ready_ratio"] is None:
        ratio = body.get("ready_partitions_ratio")
        if ratio is None and partitions:
            ratio = sum(1 for p in partitions.values() if p["ready"]) / float(len(partitions))
        doc["partition_ready_ratio"] = _number(ratio)
    if "ready" in body:
        ready = bool(body.get("ready"))
    elif partitions:
        ready = doc["partition_ready_ratio"] >= threshold["healthy_partition_ratio"]
    else:
        ready = http_status == 200
    doc.update({
        "ready": ready,
        "http_status": http_status,
        "threshold": threshold,
        "reasons": _reasons(body.get("reasons")),
        "partitions": {pid: partitions[pid] for pid in _partitions_mod.sort_ids(partitions)},
    })
    doc["not_ready_partitions"] = [pid for pid in doc["partitions"] if not doc["partitions"][pid]["ready"]]
    return doc


def looks_like_readiness(body) -> bool:
    """True when a body is a readiness document (a 503 may also be a plain overload error)."""
    return isinstance(body, dict) and any(key in body for key in ("ready", "partitions", "readiness", "reasons"))


def fetch_readiness(client) -> dict:
    """GET ``readyz`` (200 and 503 are both answers) and return the normalized document.

    A 503 whose body is an error (overload, injected fault) rather than a readiness
    document is retried like any transient failure.
    """
    attempt = 0
    while True:
        attempt += 1
        response = client.request("GET", "readyz", expected=(200, 503))
        if response.status == 200 or looks_like_readiness(response.json):
            return normalize_readiness(response.json, response.status)
        if attempt > client.retries:
            error = (response.json or {}).get("error") if isinstance(response.json, dict) else None
            raise CeptraError(
                "GET readyz failed with 503: %s [gave up after %d attempts]. The cluster is overloaded or unavailable; "
                "retry later or raise retries" % (error or response.text[:200] or "service unavailable", attempt),
                status=503, body=response.json if isinstance(response.json, dict) else None, route="readyz",
                method="GET", attempts=attempt)
        client.sleep(client.backoff_delay(attempt))


def describe_not_ready(doc: dict, part_ids=None) -> str:
    """A readable summary of what is not ready and why, e.g.
    ``partition 2: warmup, apply_lag (apply_lag_ms=340); cluster: insufficient_healthy_partitions``."""
    parts = []
    for pid, entry in doc.get("partitions", {}).items():
        if part_ids is not None and pid not in part_ids:
            continue
        if entry["ready"]:
            continue
        why = ", ".join(entry["reasons"]) or "not ready (no reason given)"
        lags = ["%s=%g" % (name, value) for name, value in sorted(entry["metrics"].items()) if name.endswith("lag_ms")]
        parts.append("partition %s: %s%s" % (pid, why, " (%s)" % ", ".join(lags) if lags else ""))
    if part_ids is not None:
        for pid in part_ids:
            if pid not in doc.get("partitions", {}):
                parts.append("partition %s: not reported by /readyz" % pid)
    if doc.get("reasons") and part_ids is None:
        parts.append("cluster: %s" % ", ".join(doc["reasons"]))
    elif not doc.get("ready") and part_ids is None and not parts:
        parts.append("cluster: not ready (no reason given)")
    return "; ".join(parts)


def partition_lags(client) -> dict:
    """Per-partition ``{part_id: (apply_lag_ms, replication_lag_ms)}`` from ``/readyz`` (None when not reported).

    The replay throttle's signal; every readiness variant and legacy ``_seconds`` field is
    read through :func:`normalize_readiness`.
    """
    doc = fetch_readiness(client)
    return {pid: (entry["metrics"].get("apply_lag_ms"), entry["metrics"].get("replication_lag_ms"))
            for pid, entry in doc["partitions"].items()}
