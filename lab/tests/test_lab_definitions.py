"""Bundle parsing, validation, compilation and lane projection (ceptra_lab.definitions)."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from ceptra_lab.definitions import (
    BundleError,
    compile_bundle,
    lane_budget_violations,
    lane_budget_warnings,
    parse_bundle,
)

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
REFERENCE = Path(SHARED, "reference/bundles")
FIXTURES = Path(__file__).parent / "data" / "bundles"


def load(path: Path):
    return compile_bundle(parse_bundle(path.read_bytes()))


def rejected(body_or_bundle, lane_overrides=None) -> list[dict]:
    with pytest.raises(BundleError) as caught:
        bundle = parse_bundle(body_or_bundle) if isinstance(body_or_bundle, (str, bytes)) else body_or_bundle
        compile_bundle(bundle, lane_overrides)
    assert caught.value.violations, "a BundleError must carry violations"
    return caught.value.violations


def minimal(expression='sum by (zone) (increase(x_total[1m]))', **query_extra) -> dict:
    """A small valid bundle to mutate in tests."""
    return {
        "bundle": {"name": "mini", "def_version": 1,
                   "lane_domains": {"zone": {"max_per_partition": 16}, "device_id": {"max_per_partition": 64}}},
        "workflow": {"phases": [
            {"name": "ingest", "type": "source.kafka", "options": {"connector": "k"}},
            {"name": "agg", "type": "aggregate.promql",
             "options": {"window": "1m", "queries": {"q": {"expression": expression, **query_extra}}}},
        ]},
    }


# ---------------------------------------------------------------- the reference bundles
EXPECTED_VALID = {
    REFERENCE / "gaming_cheat_detection.yaml": [
        ("aggregate_fast_signals", "anti_cheat_flags", "sum", ["player_id"], 15_000, 32, "ok"),
        ("aggregate_fast_signals", "headshot_ratio_short", "avg", ["player_id"], 15_000, 32, "ok"),
        ("aggregate_fast_signals", "movement_anomaly_score", "avg", ["player_id"], 15_000, 32, "ok"),
        ("aggregate_fast_signals", "matchmaking_latency_p95", None, [], 15_000, 1, "ok"),
        ("aggregate_behavior_baseline", "anti_cheat_flag_baseline", "avg", ["player_id"], 1_800_000, 32, "ok"),
        ("aggregate_behavior_baseline", "headshot_ratio_baseline", "avg", ["player_id"], 1_800_000, 32, "ok"),
        ("aggregate_behavior_baseline", "movement_anomaly_baseline", "avg", ["player_id"], 1_800_000, 32, "ok"),
    ],
    REFERENCE / "supply_chain_workflow.yaml": [
        ("aggregate_short_term_flow", "outbound_orders_rate", None, [], 600_000, 1, "ok"),
        ("aggregate_short_term_flow", "outbound_orders_rate_by_facility", "sum", ["facility_id"], 600_000, 48, "warning"),
        ("aggregate_short_term_flow", "delayed_departures", "sum", ["facility_id"], 600_000, 48, "warning"),
        ("aggregate_short_term_flow", "carrier_exception_spike", "sum", ["carrier_id"], 600_000, 24, "ok"),
        ("aggregate_operational_baseline", "outbound_orders_baseline", "avg", ["facility_id"], 21_600_000, 48, "warning"),
        ("aggregate_operational_baseline", "carrier_exception_baseline", "avg", ["carrier_id"], 21_600_000, 24, "ok"),
    ],
    # the three reference bundles below are not valid YAML as published; these fixtures are
    # the same content with the YAML corrected
    FIXTURES / "iot_workflow_fixed.yaml": [
        ("aggregate_fast_metrics", "device_temp_peak", "max", ["device_id"], 30_000, 64, "warning"),
        ("aggregate_fast_metrics", "gateway_latency_p95", None, [], 30_000, 1, "ok"),
        ("aggregate_fast_metrics", "auth_fail_short", "sum", ["gateway_id"], 30_000, 32, "ok"),
        ("aggregate_baseline_metrics", "device_temp_baseline", "avg", ["zone"], 900_000, 16, "ok"),
        ("aggregate_baseline_metrics", "auth_fail_baseline", "avg", ["gateway_id"], 900_000, 32, "ok"),
    ],
    FIXTURES / "security_workflow_fixed.yaml": [
        ("aggregate_short_window", "correlated_auth_failures", "sum", ["entity_id"], 60_000, 48, "warning"),
        ("aggregate_short_window", "malware_alert_burst", "sum", ["host_id"], 60_000, 32, "ok"),
        ("aggregate_short_window", "lateral_movement_signals", "count", ["host_id"], 60_000, 32, "ok"),
        ("aggregate_baseline_window", "auth_failure_baseline", "avg", ["entity_id"], 3_600_000, 48, "warning"),
        ("aggregate_baseline_window", "malware_alert_baseline", "avg", ["host_id"], 3_600_000, 32, "ok"),
    ],
    FIXTURES / "telco_qos_workflow_fixed.yaml": [
        ("aggregate_cell_health_fast", "cell_latency_p95", None, [], 30_000, 1, "ok"),
        ("aggregate_cell_health_fast", "cell_jitter_avg", "avg", ["cell_id"], 30_000, 48, "warning"),
        ("aggregate_cell_health_fast", "packet_loss_short", "avg", ["cell_id"], 30_000, 48, "warning"),
        ("aggregate_cell_health_baseline", "cell_latency_baseline", "avg", ["cell_id"], 7_200_000, 48, "warning"),
        ("aggregate_cell_health_baseline", "packet_loss_baseline", "avg", ["cell_id"], 7_200_000, 48, "warning"),
    ],
}


@pytest.mark.parametrize("path", list(EXPECTED_VALID), ids=lambda p: p.name)
def test_valid_bundles_compile_to_the_expected_queries_and_projections(path):
    report = load(path).validation_report()
    expected = EXPECTED_VALID[path]
    assert [(q["phase"], q["metric"], q["aggregator"], q["labels"], q["range_ms"])
            for q in report["compiled_queries"]] == [row[:5] for row in expected]
    assert [(p["metric"], p["labels"], p["projected_lanes"], p["status"])
            for p in report["lane_report"]["projections"]] == [(r[1], r[3], r[5], r[6]) for r in expected]
    assert report["lane_report"]["total_projected_lanes"] == sum(row[5] for row in expected)
    assert report["def_version"] == 1 and report["policy_version"] == 1
    warned = [row[1] for row in expected if row[6] == "warning"]
    assert len(report["warnings"]) == len(warned)
    for metric in warned:
        assert any(f"'{metric}'" in warning for warning in report["warnings"])


def test_validation_report_has_the_contract_shape():
    report = load(REFERENCE / "gaming_cheat_detection.yaml").validation_report()
    assert {"bundle_id", "bundle_name", "def_version", "policy_version", "compiled_queries",
            "lane_report", "warnings"} <= set(report)
    assert report["bundle_name"] == "gaming_liveops_cheat_detection"
    assert report["bundle_id"].startswith("gaming_liveops_cheat_detection@")
    assert len(report["bundle_id"].split("@")[1]) == 12
    assert {"phase", "metric", "aggregator", "labels", "range_ms"} <= set(report["compiled_queries"][0])
    assert set(report["lane_report"]["projections"][0]) >= {"metric", "labels", "projected_lanes", "status"}
    json.dumps(report)  # serialisable as the HTTP body


@pytest.mark.parametrize("name,bad_line,others", [
    ("iot_workflow.yaml", 29, "34, 40, 52, 58"),
    ("security_workflow.yaml", 28, "34, 40, 52, 58"),
    ("telco_qos_workflow.yaml", 26, "32, 38, 50, 56")])
def test_reference_bundles_with_broken_yaml_are_rejected_with_an_explanation(name, bad_line, others):
    violations = rejected((REFERENCE / name).read_bytes())
    first = violations[0]["message"]
    assert first.startswith(f"YAML syntax error at line {bad_line}: the value of 'expression' (line ")
    assert f"it ends at line {bad_line} (')')" in first
    assert first.endswith(f"the same problem is at lines {others}")
    assert "is an unquoted multi-line YAML scalar" in first
    assert "'expression: |'" in first


def test_iot_reference_bundle_also_reports_the_missing_space_in_gateway_id():
    messages = [v["message"] for v in rejected((REFERENCE / "iot_workflow.yaml").read_bytes())]
    assert any("line 6: 'gateway_id:{ max_per_partition: 32 }' has no space after ':'" in m
               and "write 'gateway_id: { max_per_partition: 32 }'" in m for m in messages)


def test_lane_domain_key_without_space_after_colon_is_explained():
    # the YAML is otherwise valid: the trap reaches the compiler as a strange key
    violations = rejected((FIXTURES / "iot_workflow_lane_typo.yaml").read_bytes())
    by_path = {v["path"]: v["message"] for v in violations}
    key_message = by_path["bundle.lane_domains.gateway_id:{ max_per_partition"]
    assert "lane domain key 'gateway_id:{ max_per_partition' looks like a missing space after ':' in YAML" in key_message
    assert "write 'gateway_id: { max_per_partition: 32 }'" in key_message
    missing = by_path["workflow.phases[1].options.queries.auth_fail_short.expression"]
    assert missing.startswith("missing lane domain for label 'gateway_id'; declare it under bundle.lane_domains")
    assert "workflow.phases[2].options.queries.auth_fail_baseline.expression" in by_path


# ---------------------------------------------------------------- lane budget
def test_more_than_64_projected_lanes_is_rejected_naming_metric_and_count():
    violations = rejected((FIXTURES / "lane_overflow.yaml").read_bytes())
    assert violations == [{
        "path": "workflow.phases[1].options.queries.temp_by_device_zone.expression",
        "message": "query 'temp_by_device_zone' projects 1024 lanes per partition (device_id 64 x zone 16), "
                   "above LANE_MAX_PER_PARTITION 64; group by fewer labels or lower their max_per_partition"}]


@pytest.mark.parametrize("bound,status", [(47, "ok"), (48, "warning"), (64, "warning")])
def test_projection_status_thresholds(bound, status):
    bundle = minimal("max by (zone) (max_over_time(t[1m]))")
    bundle["bundle"]["lane_domains"]["zone"]["max_per_partition"] = bound
    compiled = compile_bundle(bundle)
    assert compiled.queries[0].projected_lanes == bound
    assert compiled.validation_report()["lane_report"]["projections"][0]["status"] == status
    lane_warnings = [w for w in compiled.warnings if "lanes per partition" in w]
    assert len(lane_warnings) == (1 if status == "warning" else 0)


def test_65_lanes_is_rejected():
    bundle = minimal()
    bundle["bundle"]["lane_domains"]["zone"]["max_per_partition"] = 65
    assert "projects 65 lanes" in rejected(bundle)[0]["message"]


def test_lane_overrides_replace_bundle_bounds():
    bundle = minimal()
    assert compile_bundle(bundle, {"zone": {"max_per_partition": 8}}).queries[0].projected_lanes == 8
    violations = rejected(bundle, {"zone": {"max_per_partition": 100}})
    assert "query 'q' projects 100 lanes per partition (zone 100)" in violations[0]["message"]
    assert rejected(bundle, {"zone": {"max_per_partition": 0}})[0]["path"] == "lane_domains.zone.max_per_partition"


def test_lane_budget_violations_for_a_config_override():
    compiled = compile_bundle(minimal('sum by (device_id, zone) (increase(x_total[1m]))',),
                              {"device_id": {"max_per_partition": 4}})
    assert compiled.queries[0].projected_lanes == 64
    # the bundle's own bounds (64 x 16) would overflow without the override
    assert lane_budget_violations(compiled, {})[0]["severity"] == "error"
    assert lane_budget_violations(compiled, {"device_id": {"max_per_partition": 2}}) == []
    message_48 = ("metric 'q' projects 48 lanes per partition (device_id 3 x zone 16), "
                  "at or above the warning level 48 (limit 64)")
    assert lane_budget_warnings(compiled, {"device_id": {"max_per_partition": 3}}) == [message_48]
    assert lane_budget_violations(compiled, {"device_id": {"max_per_partition": 3}}) == [
        {"path": "lane_domains", "message": message_48, "severity": "warning"}]
    assert lane_budget_violations(compiled, {"device_id": {"max_per_partition": 3}}, include_warnings=False) == []
    violations = lane_budget_violations(compiled, {"device_id": {"max_per_partition": 5}})
    assert violations == [{"path": "lane_domains.device_id.max_per_partition",
                           "message": "metric 'q' would project 80 lanes per partition (device_id 5 x zone 16), "
                                      "above LANE_MAX_PER_PARTITION 64", "severity": "error"}]
    assert lane_budget_violations(compiled, {"device_id": {"max_per_partition": "many"}})[0]["message"] \
        == "must be a positive integer, got 'many'"
    assert lane_budget_violations(compiled, "bad")[0]["path"] == "lane_domains"


def test_gaming_bundle_override_raising_player_id_above_64_is_a_violation():
    compiled = load(REFERENCE / "gaming_cheat_detection.yaml")
    at_limit = lane_budget_violations(compiled, {"player_id": {"max_per_partition": 64}})
    assert [item["severity"] for item in at_limit] == ["warning"] * 6
    assert len(lane_budget_warnings(compiled, {"player_id": {"max_per_partition": 64}})) == 6
    violations = lane_budget_violations(compiled, {"player_id": {"max_per_partition": 65}})
    assert [item["severity"] for item in violations] == ["error"] * 6
    assert violations[0]["message"].startswith("metric 'anti_cheat_flags' would project 65 lanes")


# ---------------------------------------------------------------- query semantics
def test_matches_and_lane_of():
    compiled = load(FIXTURES / "security_workflow_fixed.yaml")
    burst = compiled.query("malware_alert_burst")
    assert burst.matches("malware_detected_total", {"severity": "HIGH", "host_id": "h1"})
    assert burst.matches("malware_detected_total", {"severity": "CRITICAL"})
    assert not burst.matches("malware_detected_total", {"severity": "HIGHEST"})  # anchored
    assert not burst.matches("malware_detected_total", {"severity": "XHIGH"})
    assert not burst.matches("malware_detected_total", {})
    assert not burst.matches("other_metric", {"severity": "HIGH"})
    assert burst.lane_of({"host_id": "h1", "severity": "HIGH"}) == "host_id=h1"
    rate = load(REFERENCE / "supply_chain_workflow.yaml").query("outbound_orders_rate")
    assert rate.matches("warehouse_orders_processed_total", {}) and rate.lane_of({"facility_id": "f"}) == ""


def test_negative_matchers_and_lane_order():
    expression = 'sum by (zone, device_id) (increase(x_total{a!="1", b!~"te.*"}[1m]))'
    bundle = minimal(expression)
    bundle["bundle"]["lane_domains"]["device_id"]["max_per_partition"] = 4
    query = compile_bundle(bundle).queries[0]
    assert query.matchers == [("a", "!=", "1"), ("b", "!~", "te.*")]
    assert query.matches("x_total", {"a": "2", "b": "xtest"})  # "xtest" does not fully match te.*
    assert not query.matches("x_total", {"a": "1"})
    assert not query.matches("x_total", {"b": "test"})
    assert query.matches("x_total", {})  # a missing label is the empty string
    assert query.lane_of({"device_id": 7, "zone": "eu"}) == "zone=eu,device_id=7"
    assert query.lane_of({}) == "zone=,device_id="


# ---------------------------------------------------------------- identity, versions, upgrade
def test_identical_content_gives_identical_bundle_id():
    text = (REFERENCE / "gaming_cheat_detection.yaml").read_text()
    first = load(REFERENCE / "gaming_cheat_detection.yaml")
    as_json = compile_bundle(parse_bundle(json.dumps(yaml.safe_load(text), indent=3)))
    reformatted = compile_bundle(parse_bundle("# a comment\n" + text.replace("def_version: 1", "def_version:   1")))
    assert first.bundle_id == as_json.bundle_id == reformatted.bundle_id
    changed = compile_bundle(parse_bundle(text.replace("queue=\"ranked\"}[15s]", "queue=\"casual\"}[15s]", 1)))
    assert changed.bundle_id != first.bundle_id
    assert changed.bundle_id.startswith("gaming_liveops_cheat_detection@")


def test_upgrade_false_needs_replay_and_policy_version():
    compiled = load(FIXTURES / "upgrade_false.yaml")
    assert compiled.needs_replay is True
    assert [(q.metric, q.upgrade) for q in compiled.queries] == [("anti_cheat_flags", True), ("headshot_ratio_p99", False)]
    assert (compiled.def_version, compiled.policy_version) == (2, 5)
    assert compiled.queries[0].by_labels == ("player_id",)  # `by` after the argument
    assert compiled.validation_report()["needs_replay"] is True
    assert load(REFERENCE / "gaming_cheat_detection.yaml").needs_replay is False
    assert rejected(minimal(upgrade="no"))[0] == {
        "path": "workflow.phases[1].options.queries.q.upgrade", "message": "must be true or false, got 'no'"}


# ---------------------------------------------------------------- other violations
def test_rule_consuming_its_own_channel_is_rejected():
    violations = rejected((FIXTURES / "feedback_loop.yaml").read_bytes())
    assert violations[0]["path"] == "workflow.phases[2].options.rules[0].emit.channel"
    assert "rule 'too_hot' emits to 'kafkas://iot.alerts', which source phase 'ingest' consumes" in violations[0]["message"]


def test_bad_promql_is_a_violation_at_the_expression_path():
    violations = rejected(minimal('sum by (zone) (increase(x_total[5m])) / 2'))
    assert violations[0]["path"] == "workflow.phases[1].options.queries.q.expression"
    assert violations[0]["message"].startswith("unsupported PromQL at line 1, column 39: binary operator '/'")


def test_missing_lane_domain_is_a_violation():
    violations = rejected(minimal("sum by (gateway_id) (increase(x_total[1m]))"))
    assert violations == [{"path": "workflow.phases[1].options.queries.q.expression",
                           "message": "missing lane domain for label 'gateway_id'; declare it under bundle.lane_domains"}]


def test_duplicate_query_names_across_phases():
    bundle = minimal()
    bundle["workflow"]["phases"].append(copy.deepcopy(bundle["workflow"]["phases"][1]) | {"name": "agg2"})
    violations = rejected(bundle)
    assert violations[0]["path"] == "workflow.phases[2].options.queries.q"
    assert "duplicate query name 'q' (also in phase 'agg')" in violations[0]["message"]


def test_duplicate_yaml_keys_and_aliases_are_refused():
    body = "bundle:\n  name: a\n  name: b\n"
    assert "duplicate key 'name'" in rejected(body)[0]["message"]
    aliased = "x: &a [1, 2]\ny: *a\n"
    assert "aliases (*name) are not supported" in rejected(aliased)[0]["message"]


@pytest.mark.parametrize("mutate,path,fragment", [
    (lambda b: b.pop("bundle"), "bundle", "missing 'bundle' section"),
    (lambda b: b["bundle"].pop("name"), "bundle.name", "required"),
    (lambda b: b["bundle"].update(name="bad name@x"), "bundle.name", "must be letters"),
    (lambda b: b["bundle"].update(def_version="1"), "bundle.def_version", "must be a positive integer, got '1'"),
    (lambda b: b["bundle"].update(def_version=True), "bundle.def_version", "positive integer"),
    (lambda b: b["bundle"].update(policy_version=0), "bundle.policy_version", "positive integer"),
    (lambda b: b["bundle"]["lane_domains"].update(zone=16), "bundle.lane_domains.zone.max_per_partition",
     "write 'zone: { max_per_partition: N }'"),
    (lambda b: b.pop("workflow"), "workflow", "missing 'workflow' section"),
    (lambda b: b["workflow"].update(phases=[]), "workflow.phases", "non-empty list"),
    (lambda b: b["workflow"]["phases"][0].update(type="source.pulsar"), "workflow.phases[0].type",
     "unsupported phase type 'source.pulsar'; supported: source.kafka, aggregate.promql"),
    (lambda b: b["workflow"]["phases"][0].update(options={}), "workflow.phases[0].options",
     "needs 'connector', 'channel' or 'topic'"),
    (lambda b: b["workflow"]["phases"][1]["options"].pop("window"), "workflow.phases[1].options.window", "required"),
    (lambda b: b["workflow"]["phases"][1]["options"].update(window="0s"), "workflow.phases[1].options.window",
     "must be positive"),
    (lambda b: b["workflow"]["phases"][1]["options"].update(queries={}), "workflow.phases[1].options.queries",
     "non-empty mapping"),
    (lambda b: b["workflow"]["phases"][1]["options"]["queries"].update(q="rate(x[1m])"),
     "workflow.phases[1].options.queries.q", "must be a mapping with 'expression'"),
    (lambda b: b["workflow"]["phases"][1].update(name="ingest"), "workflow.phases[1].name", "duplicate phase name"),
    (lambda b: b["workflow"]["phases"].append({"name": "cel", "type": "classify.cel", "options": {
        "rules": [{"name": "r", "when": "", "emit": {"channel": "c"}}]}}), "workflow.phases[2].options.rules[0].when",
     "required: a CEL condition"),
    (lambda b: b["workflow"]["phases"].append({"name": "cel", "type": "classify.cel", "options": {
        "rules": [{"name": "r", "when": "true", "emit": {}}]}}), "workflow.phases[2].options.rules[0].emit.channel",
     "required"),
    (lambda b: b["workflow"]["phases"].append({"name": "cel", "type": "classify.cel", "options": {
        "bindings": {"f": "phase.nope.metrics"}, "rules": [{"name": "r", "when": "true", "emit": {"channel": "c"}}]}}),
     "workflow.phases[2].options.bindings.f", "unknown phase 'nope'"),
    (lambda b: b["workflow"]["phases"].append({"name": "sink", "type": "sink.checkpoint", "options": {
        "include": ["agg", "nope"]}}), "workflow.phases[2].options.include[1]", "unknown phase 'nope'"),
])
def test_invalid_fields_are_violations_with_paths(mutate, path, fragment):
    bundle = minimal()
    mutate(bundle)
    violations = rejected(bundle)
    assert any(v["path"] == path and fragment in v["message"] for v in violations), violations


def test_all_violations_are_reported_at_once():
    bundle = minimal("rate(x[0s])")
    bundle["bundle"]["def_version"] = -1
    paths = [v["path"] for v in rejected(bundle)]
    assert paths == ["bundle.def_version", "workflow.phases[1].options.queries.q.expression"]


def test_unused_lane_domain_is_a_warning():
    assert compile_bundle(minimal()).warnings == ["lane domain 'device_id' is declared but no query groups by it"]


@pytest.mark.parametrize("body,fragment", [
    (b"", "bundle is empty"),
    (b"   \n", "bundle is empty"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"bundle": ', "JSON syntax error at line 1, column 12"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"- a\n- b\n", "must be a mapping"),
    (b"a: [1, 2\n", "YAML syntax error at line 2"),
    (12, "must be text"),
])
def test_parse_bundle_errors(body, fragment):
    with pytest.raises(BundleError) as caught:
        parse_bundle(body)
    assert fragment in caught.value.violations[0]["message"]
    assert caught.value.violations[0]["path"] == "body"
    assert fragment in str(caught.value)


def test_parse_bundle_accepts_yaml_and_json():
    assert parse_bundle('{"bundle": {"name": "x"}}') == {"bundle": {"name": "x"}}
    assert parse_bundle(b"bundle:\n  name: x\n") == {"bundle": {"name": "x"}}


def test_compile_bundle_rejects_a_non_mapping():
    assert rejected(["not", "a", "mapping"]) == [{"path": "body", "message": "bundle must be a mapping, got a list"}]


def test_queries_are_indexed_by_source_metric():
    compiled = load(REFERENCE / "gaming_cheat_detection.yaml")
    assert [q.metric for q in compiled.queries_by_source_metric["anti_cheat_flags_total"]] == [
        "anti_cheat_flags", "anti_cheat_flag_baseline"]
    assert "unknown_metric" not in compiled.queries_by_source_metric
