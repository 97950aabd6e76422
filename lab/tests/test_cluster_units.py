"""Unit tests of the cluster-side pieces: routing hash, merge patch, changed keys, impact, audit."""
from __future__ import annotations

import pytest

from ceptra_lab.audit import AuditLog, parse_since
from ceptra_lab.cluster import fnv1a_64
from ceptra_lab.config_history import ConfigInvalid, ConfigHistory, changed_leaf_paths, impact_of, merge_patch


def test_fnv1a_64_reference_vectors():
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


@pytest.mark.parametrize("target,patch,result", [   # the examples of RFC 7396 appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7396(target, patch, result):
    assert merge_patch(target, patch) == result


def test_changed_leaf_paths_and_impact():
    old = {"a": 1, "readiness": {"apply_lag_ms": 200, "x": 1}, "annotations": {}}
    new = {"a": 2, "readiness": {"apply_lag_ms": 300, "x": 1}, "annotations": {"ledger": {"o1": {"k": 1}}}}
    assert changed_leaf_paths(old, new) == ["a", "annotations.ledger.o1.k", "readiness.apply_lag_ms"]
    assert changed_leaf_paths(new, new) == []
    assert impact_of(["lateness_allowance_ms"]) == "hot"
    assert impact_of(["pane_size_ms", "fsync_cadence_ms"]) == "reconfigure"
    assert impact_of(["durability_mode", "wal_path"]) == "restart"


def test_config_history_versions_and_validation():
    store = ConfigHistory(["0", "1"])
    no_checks = lambda old, new: ([], [])  # noqa: E731
    new, changed, _ = store.preview({"partitions": {"1": {"ingress_gate": "warmup"}}}, no_checks)
    assert changed == ["partitions.1.ingress_gate"]
    store.commit(new, "me", "patch")
    assert store.version == 2 and store.blob(1)["partitions"] == {}
    with pytest.raises(ConfigInvalid) as info:
        store.preview({"readiness": {"healthy_partition_ratio": 1.5}, "metrics": {"m": {"pane_size_ms": 3}}}, no_checks)
    paths = {v["path"] for v in info.value.violations}
    assert paths == {"readiness.healthy_partition_ratio", "metrics.m.pane_size_ms"}


def test_audit_filters_and_since_formats():
    log = AuditLog()
    first = log.append("a", "x", {})
    log.append("b", "y", {})
    assert [r["actor"] for r in log.query(kind="y")] == ["b"]
    assert log.query(since=first["ts"] + 3600) == []
    assert parse_since("1700000000") == parse_since("1700000000000") == parse_since("1700000000000000000") == 1700000000
    assert parse_since("2023-11-14T22:13:20Z") == 1700000000
    with pytest.raises(ValueError):
        parse_since("last week")
