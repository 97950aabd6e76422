"""Lane budgets of definition bundles: projected lanes per query and the LANE_MAX_PER_PARTITION check
of a config ``lane_domains`` override against a compiled bundle (docs/lab-definitions.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definitions import CompiledBundle

LANE_MAX_PER_PARTITION = 64
LANE_WARN_PER_PARTITION = 48


def _v(path: str, message: str) -> dict:
    return {"path": path, "message": message}


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def project_lanes(by_labels, bounds: dict[str, int]) -> int:
    """Lanes per partition of a query: the product of its by() labels' bounds (1 without by)."""
    lanes = 1
    for label in by_labels:
        lanes *= bounds.get(label, 1)
    return lanes


def normalise_lane_overrides(lane_overrides, path: str = "lane_domains") -> tuple[dict[str, int], list[dict]]:
    """Read a config `lane_domains` override {label: {max_per_partition: N}} into {label: N}."""
    if lane_overrides is None:
        return {}, []
    if not isinstance(lane_overrides, dict):
        return {}, [_v(path, f"must be a mapping of label -> {{max_per_partition: N}}, got {_type_name(lane_overrides)}")]
    bounds, violations = {}, []
    for label, spec in lane_overrides.items():
        if spec is None:
            continue  # a merge-patch null: the override is removed
        bound = spec.get("max_per_partition") if isinstance(spec, dict) else None
        if not _is_positive_int(bound):
            violations.append(_v(f"{path}.{label}.max_per_partition",
                                 f"must be a positive integer, got {bound!r}"))
            continue
        bounds[str(label)] = bound
    return bounds, violations


def _budget_findings(bundle: "CompiledBundle", lane_overrides) -> tuple[list[dict], list[str]]:
    overrides, violations = normalise_lane_overrides(lane_overrides)
    warnings = []
    bounds = {**bundle.lane_domains, **overrides}
    for query in bundle.queries:
        lanes = project_lanes(query.by_labels, bounds)
        overridden = [label for label in query.by_labels if label in overrides]
        if lanes > LANE_MAX_PER_PARTITION:
            path = f"lane_domains.{overridden[0]}.max_per_partition" if overridden else "lane_domains"
            violations.append(_v(path, f"metric '{query.metric}' would project {lanes} lanes per partition "
                                       f"({_lane_product(query.by_labels, bounds)}), above "
                                       f"LANE_MAX_PER_PARTITION {LANE_MAX_PER_PARTITION}"))
        elif lanes >= LANE_WARN_PER_PARTITION:
            warnings.append(f"metric '{query.metric}' projects {lanes} lanes per partition "
                            f"({_lane_product(query.by_labels, bounds)}), at or above the warning "
                            f"level {LANE_WARN_PER_PARTITION} (limit {LANE_MAX_PER_PARTITION})")
    return violations, warnings


def lane_budget_violations(bundle: "CompiledBundle", lane_overrides: dict,
                           include_warnings: bool = True) -> list[dict]:
    """What a config `lane_domains` override would cause for `bundle`, for PATCH /v1/config.

    Each item is {"path", "message", "severity"}: severity "error" (a projection above 64
    lanes, or a malformed override: answer 422) or "warning" (48 and above: accept, report).
    include_warnings=False returns the errors only.
    """
    violations, warnings = _budget_findings(bundle, lane_overrides)
    found = [{**item, "severity": "error"} for item in violations]
    if include_warnings:
        path = "lane_domains"
        found.extend({"path": path, "message": message, "severity": "warning"} for message in warnings)
    return found


def lane_budget_warnings(bundle: "CompiledBundle", lane_overrides: dict) -> list[str]:
    """Projections at or above 48 lanes under the override (accepted, reported as warnings)."""
    return _budget_findings(bundle, lane_overrides)[1]


def _lane_product(by_labels, bounds: dict[str, int]) -> str:
    return " x ".join(f"{label} {bounds.get(label, 1)}" for label in by_labels) or "no by()"
