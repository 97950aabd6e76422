"""Unit tests of _definitions: bundle loading, validate/upload idempotency, shadow warmup waits."""

import json
import os

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _definitions as defs

from ..test_support.clock import FakeTime
from ..test_support.control_plane import (
    FAILED_SHADOW,
    PENDING_SHADOW,
    READY_SHADOW,
    WAITING_SHADOW,
    ControlPlane,
)

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
BUNDLES = os.path.join(SHARED, "reference/bundles")
SIMPLE_YAML = """
bundle:
  name: simple
  def_version: 2
workflow:
  name: simple
  phases: []
"""


# ---------------------------------------------------------------------------- loading


def test_load_bundle_reads_yaml_and_json_text():
    assert defs.load_bundle(content=SIMPLE_YAML)["bundle"]["name"] == "simple"
    assert defs.load_bundle(content='{"bundle": {"name": "j"}}') == {"bundle": {"name": "j"}}
    assert defs.load_bundle(content={"bundle": {"name": "d"}}) == {"bundle": {"name": "d"}}


def test_load_bundle_reads_a_reference_file():
    bundle = defs.load_bundle(src=os.path.join(BUNDLES, "gaming_cheat_detection.yaml"))
    assert bundle["bundle"]["name"] == "gaming_liveops_cheat_detection"


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "exactly one of src"),
    ({"src": "/nonexistent/b.yaml"}, "does not exist"),
    ({"content": "   "}, "is empty"),
    ({"content": "- a\n- b\n"}, "must be a mapping"),
    ({"content": "{not json"}, "not valid JSON"),
    ({"content": "a: [unclosed\n"}, "not valid YAML"),
])
def test_load_bundle_errors_say_what_to_fix(kwargs, fragment):
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.load_bundle(**kwargs)
    assert fragment in caught.value.message


def test_syntax_error_keeps_the_text_and_the_cluster_explains_it():
    with pytest.raises(defs.BundleSyntaxError) as caught:
        defs.load_bundle(content="a: [unclosed\n")
    assert caught.value.text == "a: [unclosed\n"
    explained = defs.explain_syntax_error(ControlPlane(), caught.value)
    assert explained.message.startswith("bundle from content does not parse; the cluster's validator says: body: ")
    assert "not valid YAML" in explained.details["parser_error"]
    assert "YAML syntax error at line 3 (from the cluster)" in explained.message
    assert explained.details["violations"][0]["path"] == "body"


def test_expected_bundle_id_matches_the_lab_for_every_reference_bundle():
    lab_defs = pytest.importorskip("ceptra_lab.definitions")
    checked = 0
    for name in sorted(os.listdir(BUNDLES)):
        if not name.endswith(".yaml"):
            continue
        path = os.path.join(BUNDLES, name)
        try:
            bundle = defs.load_bundle(src=path)
        except defs.ControlPlaneError:
            continue  # a reference bundle with a YAML trap: the cluster reports it
        assert defs.expected_bundle_id(defs.json_ready(bundle)) == lab_defs.bundle_id_of(bundle)
        checked += 1
    assert checked >= 2  # three reference bundles carry YAML traps the cluster reports


# ---------------------------------------------------------------------------- validate / upload


def test_validated_state_only_validates():
    cluster = ControlPlane()
    result = defs.ensure_bundle(cluster, defs.load_bundle(content=SIMPLE_YAML), state="validated")
    assert result["changed"] is False and result["uploaded"] is False
    assert result["report"]["bundle_name"] == "simple"
    assert result["warnings_from_cluster"] == ["lanes at 48"]
    assert [c[1] for c in cluster.calls] == ["definitions_validate"]


def test_present_uploads_once_then_is_idempotent():
    cluster = ControlPlane()
    bundle = defs.load_bundle(content=SIMPLE_YAML)
    first = defs.ensure_bundle(cluster, bundle)
    assert first["changed"] is True and first["uploaded"] is True
    assert first["bundle_id"] in cluster.bundles
    assert first["diff"]["before"]["bundles"] == [] and first["diff"]["after"]["bundles"] == [first["bundle_id"]]
    second = defs.ensure_bundle(cluster, bundle)
    assert second["changed"] is False and second["uploaded"] is False
    assert len(cluster.writes("definitions")) == 1


def test_identical_content_is_recognised_without_a_bundle_id_in_the_report():
    cluster = ControlPlane(report_bundle_id=False)
    bundle = defs.load_bundle(content=SIMPLE_YAML)
    defs.ensure_bundle(cluster, bundle)
    again = defs.ensure_bundle(cluster, json.loads(json.dumps(bundle)))
    assert again["changed"] is False
    assert len(cluster.writes("definitions")) == 1


def test_changed_content_uploads_a_new_bundle():
    cluster = ControlPlane()
    bundle = defs.load_bundle(content=SIMPLE_YAML)
    first = defs.ensure_bundle(cluster, bundle)
    bundle["bundle"]["def_version"] = 3
    second = defs.ensure_bundle(cluster, bundle)
    assert second["changed"] is True and second["bundle_id"] != first["bundle_id"]
    assert len(cluster.bundles) == 2


def test_check_mode_validates_and_reports_would_upload_without_writing():
    cluster = ControlPlane()
    result = defs.ensure_bundle(cluster, defs.load_bundle(content=SIMPLE_YAML), check_mode=True)
    assert result["changed"] is True and result["would_upload"] is True
    assert cluster.bundles == {}
    assert cluster.writes("definitions") == []
    assert cluster.writes("definitions_validate")  # validation is read-only and still runs


def test_rejected_bundle_names_every_violation():
    cluster = ControlPlane()
    cluster.validate_violations = [
        {"path": "lane_domains", "message": "metric 'x' would project 96 lanes"},
        {"path": "workflow.phases[1].options.queries.y.expression", "message": "bad PromQL"},
    ]
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.ensure_bundle(cluster, {"bundle": {"name": "bad"}})
    message = caught.value.message
    assert "lane_domains: metric 'x' would project 96 lanes" in message
    assert "workflow.phases[1].options.queries.y.expression: bad PromQL" in message
    assert caught.value.details["violations"] == cluster.validate_violations
    assert cluster.writes("definitions") == []


def test_yaml_dates_are_sent_as_json_text():
    bundle = defs.load_bundle(content="bundle:\n  name: d\n  released: 2026-01-02\n")
    cluster = ControlPlane()
    result = defs.ensure_bundle(cluster, bundle, state="validated")
    assert cluster.calls[0][4]["bundle"]["released"] == "2026-01-02"
    assert result["bundle_id"].startswith("d@")


# ---------------------------------------------------------------------------- shadow states


@pytest.mark.parametrize("info, status", [
    (READY_SHADOW, defs.READY),
    (PENDING_SHADOW, defs.PENDING),
    (WAITING_SHADOW, defs.NEEDS_REPLAY),
    (FAILED_SHADOW, defs.FAILED),
    ({"cep_shadow_state": "SHADOW_TIMEOUT", "needs_replay": True}, defs.FAILED),
    ({"shadow_apply_state": "Ready"}, defs.READY),
    ({"shadow_apply_state": "Expired"}, defs.FAILED),
    ({"shadow_apply_state": "Replaying"}, defs.PENDING),
    ({"shadow_apply_state": "Pending", "needs_replay": True}, defs.NEEDS_REPLAY),
    ({}, defs.PENDING),
])
def test_classify_shadow(info, status):
    assert defs.classify_shadow(info) == status


def test_shadow_summary_groups_partitions_in_natural_order_and_accepts_lists():
    entry = {"bundle_id": "b@1", "partitions": [
        {"partition_id": "10", **READY_SHADOW}, {"part_id": "2", **FAILED_SHADOW},
        {"part_id": "1", **WAITING_SHADOW}, {"part_id": "3", **READY_SHADOW}, {"part_id": "0", **PENDING_SHADOW}]}
    summary = defs.shadow_summary(entry)
    assert summary["ready_partitions"] == ["3", "10"]
    assert summary["needs_replay"] == ["1"]
    assert summary["failed_partitions"] == ["2"]
    assert summary["pending_partitions"] == ["0"]
    assert summary["all_ready"] is False
    limited = defs.shadow_summary(entry, ["3", "10", "99"])
    assert limited["unknown_partitions"] == ["99"] and limited["all_ready"] is False
    assert defs.shadow_summary(entry, ["3", "10"])["all_ready"] is True


def test_get_definitions_tolerates_a_bundle_map_and_a_missing_active():
    class MapClient:
        def get_json(self, route, **kw):
            return {"active": {}, "bundles": {"b@1": {"state": "distributed", "partitions": {}}}}

    doc = defs.get_definitions(MapClient())
    assert doc["active"] is None
    assert doc["bundles"][0]["bundle_id"] == "b@1"


def test_wait_settled_returns_once_nothing_warms_on_its_own():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", PENDING_SHADOW, p1=WAITING_SHADOW)
    cluster.warm_after_polls = 3
    fake = FakeTime()
    summary = defs.wait_for_shadow(cluster, "b@1", timeout=60, interval=5, sleep=fake.sleep, clock=fake.clock)
    assert summary["polls"] == 3
    assert summary["ready_partitions"] == ["0", "2", "3"]
    assert summary["needs_replay"] == ["1"]
    assert fake.sleeps == [5, 5]


def test_wait_ready_fails_at_once_on_partitions_that_cannot_get_ready():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", PENDING_SHADOW, p1=WAITING_SHADOW, p2=FAILED_SHADOW)
    fake = FakeTime()
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.wait_for_shadow(cluster, "b@1", wait_for="ready", timeout=60, interval=1, sleep=fake.sleep,
                             clock=fake.clock)
    assert "1 (SHADOW_WAITING_FOR_WAL)" in caught.value.message
    assert "2 (SHADOW_FAILED)" in caught.value.message
    assert "wal_replay" in caught.value.message
    assert fake.sleeps == []


def test_wait_times_out_naming_the_partitions_still_warming():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p2=PENDING_SHADOW, p3=dict(PENDING_SHADOW, cep_shadow_state="SHADOW_REPLAYING"))
    fake = FakeTime()
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.wait_for_shadow(cluster, "b@1", timeout=10, interval=4, sleep=fake.sleep, clock=fake.clock)
    assert "timed out after 10s" in caught.value.message
    assert "2 (SHADOW_PENDING), 3 (SHADOW_REPLAYING)" in caught.value.message
    assert caught.value.details["shadow"]["pending_partitions"] == ["2", "3"]


def test_wait_limited_to_some_partitions_ignores_the_others():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    summary = defs.wait_for_shadow(cluster, "b@1", part_ids=["0", "1"], wait_for="ready", timeout=1)
    assert summary["all_ready"] is True and set(summary["partitions"]) == {"0", "1"}


def test_wait_on_an_unknown_bundle_says_to_upload_it():
    cluster = ControlPlane()
    cluster.add_bundle("other@1")
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.wait_for_shadow(cluster, "missing@1", timeout=1)
    assert "missing@1 is not on the cluster (uploaded bundles: other@1)" in caught.value.message


def test_wait_on_an_unknown_partition_fails():
    cluster = ControlPlane()
    cluster.add_bundle("b@1")
    with pytest.raises(defs.ControlPlaneError) as caught:
        defs.wait_for_shadow(cluster, "b@1", part_ids=["7"], timeout=1)
    assert "partition(s) 7" in caught.value.message
