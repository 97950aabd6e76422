"""The cluster config's version history: defaults, RFC 7396 merge patches, bounds, rollback.

Every version keeps its full blob; a PATCH that changes nothing keeps the version, a
rollback restores an old blob as a NEW version. Cluster-specific checks (dedup occupancy,
lane budget, known partitions) are passed in by the caller as a function.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

# One copy of the contract's defaults: the engine resolves knobs against the same dict.
from .config_knobs import DEFAULT_CONFIG
from .contract_bounds import bounds


# Every knob and its bounds: the collection's table, which the modules check overrides
# against before they send them (contract_bounds says how the lab reads it).
MAX_DURATION_MS = bounds.MAX_DURATION_MS
INT_BOUNDS: dict[str, tuple[int, int]] = bounds.INT_BOUNDS
FLOW_BOUNDS = bounds.FLOW_BOUNDS
READINESS_BOUNDS = bounds.READINESS_BOUNDS
PER_METRIC_BOUNDS = bounds.PER_METRIC_BOUNDS
LANE_DOMAIN_BOUNDS = bounds.LANE_DOMAIN_BOUNDS
PER_METRIC_KEYS = bounds.PER_METRIC_KEYS
PER_PARTITION_KEYS = bounds.PER_PARTITION_KEYS
STRING_KEYS = dict.fromkeys(bounds.STRING_KEYS)
OBJECT_KEYS = bounds.OBJECT_KEYS
KNOWN_TOP_LEVEL = set(bounds.KNOWN_TOP_LEVEL)
RECONFIGURE_KEYS = {"durability_mode", "fsync_cadence_ms"}
RESTART_KEYS = {"wal_path", "numa_affinity"}


class ConfigConflict(Exception):
    """If-Match named a version that is no longer current (HTTP 412)."""


class ConfigInvalid(Exception):
    """The resulting config breaks a rule (HTTP 422); .violations lists [{path, message}]."""

    def __init__(self, violations: list[dict], message: str = "config validation failed"):
        super().__init__(message)
        self.violations = violations


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def with_defaults(config: dict) -> dict:
    """The config with every knob the contract gives a default filled in (a copy).

    An RFC 7396 ``null`` deletes a key; for a knob with a documented default that means
    "back to the default", so the stored blob never lacks one (the engine and every reader
    can rely on it). Knobs without a default (``durability_mode``, ``fsync_cadence_ms``,
    ``wal_path``, ``numa_affinity``, per-metric/per-partition overrides, lane-domain overrides,
    annotations) are optional: deleting one removes it and the next level applies.
    """
    result = copy.deepcopy(config)
    for key, default in DEFAULT_CONFIG.items():
        if key not in result:
            result[key] = copy.deepcopy(default)
        elif key in ("partition_flow", "readiness") and isinstance(result[key], dict):
            for sub_key, sub_default in default.items():
                result[key].setdefault(sub_key, sub_default)
    return result


def changed_leaf_paths(old, new, prefix: str = "") -> list[str]:
    """Dotted paths of leaves that differ between two JSON documents (sorted)."""
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            child = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                value = new.get(key, old.get(key))
                if isinstance(value, dict) and value:
                    paths.extend(changed_leaf_paths({} if key not in old else old[key], {} if key not in new else new[key], child))
                else:
                    paths.append(child)
            else:
                paths.extend(changed_leaf_paths(old[key], new[key], child))
        return paths
    if old != new or type(old) is not type(new):
        return [prefix] if prefix else [""]
    return []


def impact_of(changed_keys: list[str]) -> str:
    """The strongest impact class among the changed keys: hot < reconfigure < restart."""
    tops = {key.split(".", 1)[0] for key in changed_keys}
    if tops & RESTART_KEYS:
        return "restart"
    if tops & RECONFIGURE_KEYS:
        return "reconfigure"
    return "hot"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(violations: list, path: str, value, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not _is_int(value):
        violations.append({"path": path, "message": f"must be an integer, got {_type_name(value)}"})
    elif value < low or value > high:
        violations.append({"path": path, "message": f"{value} is out of bounds; allowed [{low}, {high}]"})


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", float: "a non-integer number",
            type(None): "null"}.get(type(value), type(value).__name__)


def validate_shape(config: dict, partition_ids: list[str]) -> list[dict]:
    """Type and bounds checks of a whole config blob; returns violations."""
    violations: list[dict] = []
    for key, value in config.items():
        if key not in KNOWN_TOP_LEVEL:
            violations.append({"path": key, "message": "unknown top-level key"})
        elif key in INT_BOUNDS:
            _check_int(violations, key, value, INT_BOUNDS[key])
        elif key in STRING_KEYS:
            if not isinstance(value, str):
                violations.append({"path": key, "message": "must be a string"})
        elif not isinstance(value, dict):
            violations.append({"path": key, "message": "must be an object"})
    if violations:
        return violations
    for sub_key, bounds_table in (("partition_flow", FLOW_BOUNDS), ("readiness", READINESS_BOUNDS)):
        for key, value in config.get(sub_key, {}).items():
            if key in bounds_table:
                _check_int(violations, f"{sub_key}.{key}", value, bounds_table[key])
            elif not (sub_key == "readiness" and key == "healthy_partition_ratio"):
                violations.append({"path": f"{sub_key}.{key}", "message": "unknown key"})
    ratio = config.get("readiness", {}).get("healthy_partition_ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1):
        violations.append({"path": "readiness.healthy_partition_ratio", "message": "must be a number in (0, 1]"})
    for metric, knobs in config.get("metrics", {}).items():
        if not isinstance(knobs, dict):
            violations.append({"path": f"metrics.{metric}", "message": "must be an object"})
            continue
        for key, value in knobs.items():
            if key in PER_METRIC_KEYS:
                _check_int(violations, f"metrics.{metric}.{key}", value, PER_METRIC_BOUNDS)
            else:
                violations.append({"path": f"metrics.{metric}.{key}", "message": f"unknown key; allowed {', '.join(PER_METRIC_KEYS)}"})
    for part_id, knobs in config.get("partitions", {}).items():
        if part_id not in partition_ids:
            violations.append({"path": f"partitions.{part_id}", "message": f"unknown partition; this cluster has 0..{len(partition_ids) - 1}"})
            continue
        if not isinstance(knobs, dict):
            violations.append({"path": f"partitions.{part_id}", "message": "must be an object"})
            continue
        for key, value in knobs.items():
            if key == "ingress_gate":
                if value not in ("open", "warmup"):
                    violations.append({"path": f"partitions.{part_id}.ingress_gate", "message": "must be 'open' or 'warmup'"})
            elif key in PER_METRIC_KEYS:
                _check_int(violations, f"partitions.{part_id}.{key}", value, PER_METRIC_BOUNDS)
            else:
                violations.append({"path": f"partitions.{part_id}.{key}", "message": f"unknown key; allowed {', '.join(PER_PARTITION_KEYS)}"})
    for label, domain in config.get("lane_domains", {}).items():
        if not isinstance(domain, dict) or set(domain) != {"max_per_partition"}:
            violations.append({"path": f"lane_domains.{label}", "message": "must be {\"max_per_partition\": N}"})
        else:
            _check_int(violations, f"lane_domains.{label}.max_per_partition", domain["max_per_partition"],
                       LANE_DOMAIN_BOUNDS)
    return violations


class ConfigHistory:
    """All config versions of the cluster; version 1 is the defaults."""

    def __init__(self, partition_ids: list[str], versions: list[dict] | None = None):
        self.partition_ids = partition_ids
        # each version: {"version", "config", "ts", "actor", "reason"}
        # a stored blob that lacks a defaulted knob (written before deletes restored defaults)
        # means that default
        for entry in versions or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                raise ValueError("stored config versions are malformed (each needs a 'config' object); "
                                 "fix config.json in the state dir or start with an empty one")
            entry["config"] = with_defaults(entry["config"])
        self.versions: list[dict] = versions or [
            {"version": 1, "config": copy.deepcopy(DEFAULT_CONFIG), "ts": time.time(), "actor": "lab", "reason": "defaults"}]
        self.listeners: list[Callable[[dict], None]] = []
        problems = validate_shape(self.config, partition_ids)
        if problems:   # a stored config from an older lab that today's rules refuse
            raise ValueError(f"stored config version {self.version} is not valid: "
                             + "; ".join(f"{v['path']}: {v['message']}" for v in problems)
                             + " (fix config.json in the state dir or start with an empty one)")

    @property
    def version(self) -> int:
        """The current version number."""
        return self.versions[-1]["version"]

    @property
    def config(self) -> dict:
        """The current config blob (do not mutate)."""
        return self.versions[-1]["config"]

    def blob(self, version: int) -> dict | None:
        """The config of an older version, or None."""
        for entry in self.versions:
            if entry["version"] == version:
                return entry["config"]
        return None

    def check_if_match(self, if_match: str | None) -> None:
        """Raise ConfigConflict when If-Match does not name the current version."""
        if if_match is None:
            return
        wanted = if_match.strip()
        if wanted == "*":
            return
        if wanted.startswith("W/"):
            wanted = wanted[2:]
        if wanted.strip('"') != str(self.version):
            raise ConfigConflict(f"If-Match {if_match} does not match the current version \"{self.version}\"")

    def preview(self, patch: dict, extra_checks: Callable[[dict, dict], tuple[list, list]]) -> tuple[dict, list[str], list[str]]:
        """Compute (new_config, changed_keys, warnings) of a merge patch or raise ConfigInvalid."""
        if not isinstance(patch, dict):
            raise ConfigInvalid([{"path": "", "message": "a merge patch must be a JSON object"}])
        return self._preview_blob(with_defaults(merge_patch(self.config, patch)), extra_checks)

    def preview_rollback(self, blob: dict, extra_checks: Callable[[dict, dict], tuple[list, list]]) -> tuple[dict, list[str], list[str]]:
        """The same checks for restoring an old blob (it may predate today's rules) or raise ConfigInvalid."""
        return self._preview_blob(with_defaults(blob), extra_checks)

    def _preview_blob(self, new_config: dict, extra_checks) -> tuple[dict, list[str], list[str]]:
        violations = validate_shape(new_config, self.partition_ids)
        warnings: list[str] = []
        if not violations:
            extra_violations, warnings = extra_checks(self.config, new_config)
            violations.extend(extra_violations)
        if violations:
            raise ConfigInvalid(violations)
        return new_config, changed_leaf_paths(self.config, new_config), warnings

    def commit(self, new_config: dict, actor: str, reason: str) -> dict:
        """Store a new version and notify listeners; returns the version entry."""
        entry = {"version": self.version + 1, "config": new_config, "ts": time.time(), "actor": actor, "reason": reason}
        self.versions.append(entry)
        for listener in self.listeners:
            listener(entry)
        return entry
