"""No accepted input can make a later request answer 500 (issue 11).

Every config knob is validated with bounds before it is stored; an RFC 7396 `null` delete of
a knob with a documented default restores that default; the rollback version must be ASCII
digits; the test-outage duration is bounded. A refused request leaves everything as it was,
and after the largest accepted values every read still answers.
"""
from __future__ import annotations

import json

import pytest

from ceptra_lab.config_history import FLOW_BOUNDS, INT_BOUNDS, LANE_DOMAIN_BOUNDS, MAX_DURATION_MS, READINESS_BOUNDS
from ceptra_lab.config_knobs import DEFAULT_CONFIG
from ceptra_lab.testing import LabProcess, append_stream, sample_event

READS = ["/v1/state", "/readyz", "/metrics", "/v1/config", "/v1/definitions", "/v1/audit",
         "/v1/test/metrics-snapshot?part_id=0", "/v1/test/faults"]


def fingerprint(lab):
    """Config, commit indexes, outage windows and audit length: what a refused request must not change."""
    state = lab.request("GET", "/v1/state")[2]
    config = lab.request("GET", "/v1/config")[2]
    audit = lab.request("GET", "/v1/audit")[2]["records"]
    return (config, [(p["commit_index"], p["unavailable_windows"]) for p in state["partitions"]], len(audit))


def assert_every_read_answers(lab, tag):
    """Append through both ingest routes, then read every document: nothing answers 5xx."""
    status, _, body = lab.request("POST", "/append", sample_event(f"{tag}-a", part_id="0"), role="ingest")
    assert status == 200 and body["status"] == "Healthy", body
    lines = append_stream(lab, "1", [sample_event(f"{tag}-s{i}", part_id="1") for i in range(3)])
    assert [line["status"] for line in lines] == ["Healthy"] * 3, lines
    for path in READS:
        status, _, body = lab.request("GET", path)
        assert status in (200, 503) and (status == 200 or path == "/readyz"), (path, status, body)


@pytest.fixture(scope="module")
def lab():
    with LabProcess(partitions=2, test_mode=True) as process:
        yield process


@pytest.mark.parametrize("patch,path", [
    ({"partition_flow": {"max_event_bytes": None}}, ("partition_flow", "max_event_bytes")),
    ({"dedup_capacity_per_partition": None}, ("dedup_capacity_per_partition",)),
    ({"readiness": {"healthy_partition_ratio": None}}, ("readiness", "healthy_partition_ratio")),
    ({"correction_horizon_ms": None}, ("correction_horizon_ms",)),
])
def test_null_delete_restores_the_documented_default(lab, patch, path):
    top = path[0]
    changed = {top: {path[1]: 2 * DEFAULT_CONFIG[top][path[1]] if path[1] != "healthy_partition_ratio" else 0.5}} \
        if len(path) == 2 else {top: DEFAULT_CONFIG[top] * 2}
    status, _, body = lab.request("PATCH", "/v1/config", changed, role="operator")
    assert status == 200, body
    status, _, body = lab.request("PATCH", "/v1/config", patch, role="operator")
    assert status == 200 and body["changed_keys"] == [".".join(path)], body
    config = lab.request("GET", "/v1/config")[2]["config"]
    value, default = config, DEFAULT_CONFIG
    for key in path:
        value, default = value[key], default[key]
    assert value == default
    # deleting it again changes nothing (it is the default already): same version, no audit record
    version = lab.request("GET", "/v1/config")[2]["version"]
    status, _, body = lab.request("PATCH", "/v1/config", patch, role="operator")
    assert status == 200 and body["changed_keys"] == [] and body["version"] == version
    assert_every_read_answers(lab, "null-" + ".".join(path))


def test_deleting_whole_objects_restores_their_defaults(lab):
    assert lab.request("PATCH", "/v1/config", {"partition_flow": {"max_events": 4096}, "readiness": {"apply_lag_ms": 300},
                                               "metrics": {"m": {"lateness_allowance_ms": 5}}}, role="operator")[0] == 200
    status, _, body = lab.request("PATCH", "/v1/config", {"partition_flow": None, "readiness": None, "metrics": None,
                                                          "annotations": None, "lane_domains": None}, role="operator")
    assert status == 200, body
    assert set(body["changed_keys"]) == {"partition_flow.max_events", "readiness.apply_lag_ms", "metrics.m.lateness_allowance_ms"}
    config = lab.request("GET", "/v1/config")[2]["config"]
    for key in ("partition_flow", "readiness", "metrics", "annotations", "lane_domains"):
        assert config[key] == DEFAULT_CONFIG[key]
    assert_every_read_answers(lab, "null-objects")


def test_optional_knobs_without_a_default_can_be_set_and_deleted(lab):
    assert lab.request("PATCH", "/v1/config", {"durability_mode": "STRICT", "fsync_cadence_ms": 10}, role="operator")[0] == 200
    status, _, body = lab.request("PATCH", "/v1/config", {"durability_mode": None, "fsync_cadence_ms": None}, role="operator")
    assert status == 200 and body["changed_keys"] == ["durability_mode", "fsync_cadence_ms"]
    config = lab.request("GET", "/v1/config")[2]["config"]
    assert "durability_mode" not in config and "fsync_cadence_ms" not in config


def every_bound():
    """(patch, dotted path, low, high) for every bounded integer knob of the layout."""
    cases = [({key: None}, key, low, high) for key, (low, high) in INT_BOUNDS.items()]
    cases += [({"partition_flow": {key: None}}, f"partition_flow.{key}", low, high) for key, (low, high) in FLOW_BOUNDS.items()]
    cases += [({"readiness": {key: None}}, f"readiness.{key}", low, high) for key, (low, high) in READINESS_BOUNDS.items()]
    for key in ("lateness_allowance_ms", "watermark_guard_ms", "correction_horizon_ms"):
        cases.append(({"metrics": {"m": {key: None}}}, f"metrics.m.{key}", 0, MAX_DURATION_MS))
        cases.append(({"partitions": {"0": {key: None}}}, f"partitions.0.{key}", 0, MAX_DURATION_MS))
    cases.append(({"lane_domains": {"player_id": {"max_per_partition": None}}}, "lane_domains.player_id.max_per_partition",
                  *LANE_DOMAIN_BOUNDS))
    return cases


def with_value(patch, value):
    """The patch with its single null leaf replaced by value."""
    text = json.dumps(patch).replace("null", json.dumps(value))
    return json.loads(text)


@pytest.mark.parametrize("patch,path,low,high", every_bound(), ids=[case[1] for case in every_bound()])
def test_every_integer_knob_is_bounded(lab, patch, path, low, high):
    before = fingerprint(lab)
    for bad in (high + 1, low - 1, 9223372036854775807, 1.5, "5", True):
        status, _, body = lab.request("PATCH", "/v1/config", with_value(patch, bad), role="operator")
        assert status == 422 and any(v["path"] == path for v in body["violations"]), (bad, body)
        assert fingerprint(lab) == before


def test_the_largest_and_smallest_accepted_values_break_nothing(lab_factory):
    for name, pick in (("max", lambda low, high: high), ("min", lambda low, high: low)):
        lab = lab_factory(partitions=2, test_mode=True)
        patch = {}
        for case_patch, path, low, high in every_bound():
            if path in ("dedup_capacity_per_partition", "checkpoint_full_interval_ms") and name == "min":
                continue   # a tiny dedup table or a 15 s checkpoint is legal but not what this checks
            merge(patch, with_value(case_patch, pick(low, high)))
        status, _, body = lab.request("PATCH", "/v1/config", patch, role="operator")
        assert status == 200, body
        assert_every_read_answers(lab, name)


def merge(target, patch):
    for key, value in patch.items():
        if isinstance(value, dict):
            merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


def test_huge_correction_horizon_is_refused_and_state_stays_readable(lab):
    assert_every_read_answers(lab, "horizon-before")
    before = fingerprint(lab)
    status, _, body = lab.request("PATCH", "/v1/config", {"correction_horizon_ms": 9223372036854775807}, role="operator")
    assert status == 422 and body["violations"][0]["path"] == "correction_horizon_ms"
    assert "[0, 315360000000]" in body["violations"][0]["message"]
    assert fingerprint(lab) == before
    assert lab.request("GET", "/v1/state")[0] == 200


@pytest.mark.parametrize("to", ["%C2%B2", "%D9%A3", "-1", "1.0", "0x2", "1e3", "%EF%BC%91", "9" * 40, ""])
def test_rollback_version_must_be_ascii_digits(lab, to):
    assert lab.request("PATCH", "/v1/config", {"annotations": {"rollback": to}}, role="operator")[0] == 200
    before = fingerprint(lab)
    status, _, body = lab.request("POST", f"/v1/config/rollback?to={to}", role="operator")
    assert status == 400 and body["status"] == 400 and "ASCII digits" in body["error"], body
    assert fingerprint(lab) == before


def test_huge_outage_duration_is_refused(lab):
    before = fingerprint(lab)
    for duration in (9223372036854775807, 86_400_001, 0, -5, 2.5):
        status, _, body = lab.request("POST", "/v1/test/outage", {"duration_ms": duration})
        assert status == 422 and body["violations"][0]["path"] == "duration_ms", body
    assert fingerprint(lab) == before
    state = lab.request("GET", "/v1/state")[2]
    assert all(p["unavailable_windows"] == [] for p in state["partitions"])


def test_the_longest_outage_keeps_every_read_answering(lab_factory):
    lab = lab_factory(partitions=2, test_mode=True)
    status, _, body = lab.request("POST", "/v1/test/outage", {"part_ids": ["0"], "duration_ms": 86_400_000})
    assert status == 200, body
    for path in READS:
        status, _, body = lab.request("GET", path)
        assert status in (200, 503), (path, status, body)
    answer = lab.request("POST", "/append", sample_event("fenced", part_id="0"), role="ingest")[2]
    assert answer["cep_status_reason"] == "PERMANENT_DURABILITY"


@pytest.mark.parametrize("body,path", [
    ({"apply_capacity": 1e300}, "apply_capacity"), ({"replication_lag_ms": 1e30}, "replication_lag_ms"),
    ({"not_leader": 9223372036854775807}, "not_leader")])
def test_fault_hooks_are_bounded(lab, body, path):
    before = fingerprint(lab)
    status, _, answer = lab.request("POST", "/v1/test/faults", body)
    assert status == 422 and answer["violations"][0]["path"] == path, answer
    assert fingerprint(lab) == before


def test_a_stored_config_breaking_todays_rules_stops_start_up_with_a_message(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    bad = dict(DEFAULT_CONFIG, correction_horizon_ms=9223372036854775807)
    (state_dir / "config.json").write_text(json.dumps({"versions": [
        {"version": 1, "config": DEFAULT_CONFIG, "ts": 0, "actor": "lab", "reason": "defaults"},
        {"version": 2, "config": bad, "ts": 1, "actor": "x", "reason": "patch"}]}))
    process = LabProcess(partitions=1, state_dir=str(state_dir))
    with pytest.raises(RuntimeError) as info:
        process.start()
    assert "stored config version 2 is not valid: correction_horizon_ms" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_stored_blob_without_a_default_means_the_default(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    old = {key: value for key, value in DEFAULT_CONFIG.items() if key != "dedup_capacity_per_partition"}
    old["partition_flow"] = {"max_events": 2048, "max_bytes": 16777216}
    (state_dir / "config.json").write_text(json.dumps({"versions": [
        {"version": 1, "config": old, "ts": 0, "actor": "lab", "reason": "defaults"}]}))
    with LabProcess(partitions=1, state_dir=str(state_dir)) as lab:
        config = lab.request("GET", "/v1/config")[2]["config"]
        assert config["dedup_capacity_per_partition"] == 1000000
        assert config["partition_flow"]["max_event_bytes"] == 1048576
        assert lab.request("POST", "/append", sample_event("old-1", part_id="0"), role="ingest")[2]["status"] == "Healthy"


def nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_documents_nested_too_deep_are_refused_and_reads_keep_answering(lab):
    """orjson writes at most 254 levels: a stored deeper document broke every later read."""
    before = fingerprint(lab)
    for method, path, body in (("PATCH", "/v1/config", {"annotations": nested(300)}),
                               ("POST", "/v1/audit", {"kind": "deep", "details": nested(300)}),
                               ("POST", "/append", dict(sample_event("deep-1", part_id="0"), extra=nested(300)))):
        status, _, answer = lab.request(method, path, body, role="admin")
        assert status == 400 and "deeper than 64 levels" in answer["error"], (path, answer)
    line = json.dumps(dict(sample_event("deep-2", part_id="1"), extra=nested(300)))
    status, _, text = lab.request("POST", "/v1/partitions/1/append-stream", data=line.encode() + b"\n", role="ingest",
                                  headers={"Content-Type": "application/x-ndjson"})
    answer = json.loads(text)
    assert status == 200 and answer["cep_status_reason"] == "PERMANENT_PAYLOAD" and "deeper" in answer["error"]
    assert fingerprint(lab) == before
    # as deep as allowed: stored, and every read still answers
    assert lab.request("PATCH", "/v1/config", {"annotations": nested(60)}, role="operator")[0] == 200
    assert lab.request("POST", "/v1/audit", {"kind": "deep", "details": nested(60)})[0] == 201
    assert_every_read_answers(lab, "deep")


def test_dumps_falls_back_for_what_orjson_refuses():
    from ceptra_lab.http_common import dumps, json_depth, loads

    assert json.loads(dumps({"big": 2 ** 70, "deep": nested(260)}))["big"] == 2 ** 70
    assert json_depth({"a": [1, {"b": []}]}) == 4 and json_depth(5) == 0
    assert loads(b'{"a": [' + b"[" * 10 + b"]" * 10 + b"]}") == {"a": [[[[[[[[[[[]]]]]]]]]]]}
    with pytest.raises(ValueError):
        loads(json.dumps(nested(65)))
