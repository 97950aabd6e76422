"""Unit tests of the bundle and bundle_info modules (fake control plane, real AnsibleModule)."""

import json

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError
from ansible_collections.ceptra.backfill.plugins.modules import bundle, bundle_info

from ..test_support.control_plane import (
    FAILED_SHADOW,
    PENDING_SHADOW,
    READY_SHADOW,
    WAITING_SHADOW,
    ControlPlane,
)

BUNDLE_YAML = "bundle:\n  name: unit\n  def_version: 1\nworkflow:\n  name: unit\n  phases: []\n"


def test_bundle_present_uploads_then_reruns_unchanged(tmp_path, run_module):
    src = tmp_path / "unit.yaml"
    src.write_text(BUNDLE_YAML)
    cluster = ControlPlane()
    failed, check = run_module(bundle, {"src": str(src)}, cluster, check_mode=True)
    assert not failed and check["changed"] is True and check["would_upload"] is True
    assert cluster.bundles == {}
    failed, first = run_module(bundle, {"src": str(src)}, cluster)
    assert not failed and first["changed"] is True and first["bundle_id"].startswith("unit@")
    assert list(cluster.bundles) == [first["bundle_id"]]
    failed, again = run_module(bundle, {"src": str(src)}, cluster)
    assert not failed and again["changed"] is False and again["bundle_id"] == first["bundle_id"]
    assert "secret-token" not in json.dumps(again)
    assert cluster.closed is True


def test_bundle_validated_with_json_content(run_module):
    cluster = ControlPlane()
    content = json.dumps({"bundle": {"name": "j", "def_version": 1}})
    failed, result = run_module(bundle, {"content": content, "state": "validated"}, cluster)
    assert not failed and result["changed"] is False and result["report"]["bundle_name"] == "j"
    assert cluster.writes("definitions") == []


def test_bundle_rejection_lists_violations(run_module):
    cluster = ControlPlane()
    cluster.validate_violations = [{"path": "lane_domains", "message": "96 lanes exceed 64"}]
    failed, result = run_module(bundle, {"content": BUNDLE_YAML}, cluster)
    assert failed and "lane_domains: 96 lanes exceed 64" in result["msg"]
    assert result["violations"] == cluster.validate_violations


def test_bundle_yaml_trap_gets_the_clusters_explanation(run_module):
    failed, result = run_module(bundle, {"content": "a: [oops\n"}, ControlPlane())
    assert failed and "does not parse" in result["msg"] and "from the cluster" in result["msg"]
    assert "not valid YAML" in result["parser_error"]


def test_bundle_needs_src_or_content(run_module):
    failed, result = run_module(bundle, {}, ControlPlane())
    assert failed and "one of the following is required: src, content" in result["msg"]


def test_bundle_transport_error_is_readable(run_module):
    class Broken(ControlPlane):
        def request(self, *args, **kwargs):
            raise CeptraError("connection refused by 127.0.0.1:1", status=None, route="definitions_validate")

    failed, result = run_module(bundle, {"content": BUNDLE_YAML}, Broken())
    assert failed
    assert result["msg"] == "Could not validate or upload the bundle: connection refused by 127.0.0.1:1"


def test_bundle_info_lists_and_groups_partitions(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=WAITING_SHADOW, p2=FAILED_SHADOW, p3=PENDING_SHADOW)
    failed, result = run_module(bundle_info, {"bundle_id": "b@1"}, cluster)
    assert not failed and result["changed"] is False
    assert result["ready_partitions"] == ["0"] and result["needs_replay"] == ["1"]
    assert result["failed_partitions"] == ["2"] and result["pending_partitions"] == ["3"]
    assert result["shadow"]["2"]["cep_shadow_state"] == "SHADOW_FAILED"
    assert result["is_active"] is False and result["bundles"][0]["bundle_id"] == "b@1"


def test_bundle_info_wait_settles_on_needs_replay(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1", PENDING_SHADOW, p1=WAITING_SHADOW)
    cluster.warm_after_polls = 2
    args = {"bundle_id": "b@1", "wait": True, "wait_interval": 0, "wait_timeout": 30}
    failed, result = run_module(bundle_info, args, cluster)
    assert not failed and result["polls"] == 2
    assert result["needs_replay"] == ["1"] and result["ready_partitions"] == ["0", "2", "3"]


def test_bundle_info_wait_timeout_names_stuck_partitions(run_module):
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    args = {"bundle_id": "b@1", "wait": True, "wait_interval": 0, "wait_timeout": 0}
    failed, result = run_module(bundle_info, args, cluster)
    assert failed and "still warming: 3 (SHADOW_PENDING)" in result["msg"]
    assert result["pending_partitions"] == ["3"]


def test_bundle_info_wait_needs_bundle_id(run_module):
    failed, result = run_module(bundle_info, {"wait": True}, ControlPlane())
    assert failed and "bundle_id" in result["msg"]


def test_bundle_info_unknown_bundle(run_module):
    failed, result = run_module(bundle_info, {"bundle_id": "x@1"}, ControlPlane())
    assert failed and "x@1 is not on the cluster" in result["msg"]


def test_bundle_info_wait_on_a_partition_the_bundle_lacks_fails_at_once(run_module):
    cluster = ControlPlane()
    failed, uploaded = run_module(bundle, {"content": BUNDLE_YAML}, cluster)
    assert not failed
    reads = len([c for c in cluster.calls if c.route == "definitions"])
    failed, result = run_module(bundle_info, {"bundle_id": uploaded["bundle_id"], "wait": True, "part_ids": ["0", "99"],
                                              "wait_timeout": 300}, cluster)
    assert failed and "Traceback" not in json.dumps(result)
    assert ("partition(s) 99 do not exist: bundle %s (GET /v1/definitions) reports partitions 0, 1, 2, 3"
            % uploaded["bundle_id"]) in result["msg"]
    assert len([c for c in cluster.calls if c.route == "definitions"]) == reads + 1     # one read: no waiting
    failed, result = run_module(bundle_info, {"bundle_id": uploaded["bundle_id"], "part_ids": ["99"]}, cluster)
    assert failed and "partition(s) 99 do not exist" in result["msg"]
