"""Config manager against the lab through ansible-playbook: stage, rerun, revert, expiry sweep, refusals.

The tasks are the config_* targets under targets/ (run_target.yml runs them).
"""

import json
import time

import pytest


def override(lab_vars, name, settings, valid_for="1h", **extra):
    """Extra vars of the config_override target."""
    return dict(lab_vars, override_name=name, override_settings=settings, override_valid_for=valid_for, **extra)


def named(lab_vars, name):
    """Extra vars of the config_revert target."""
    return dict(lab_vars, override_name=name)


def config_of(lab):
    status, _headers, body = lab.request("GET", "/v1/config", role="observer")
    assert status == 200
    return body["version"], body["config"]


def config_writes(lab):
    status, _headers, body = lab.request("GET", "/v1/audit?kind=config_change", role="observer")
    assert status == 200
    return len(body["records"])


def test_stage_check_real_rerun_then_revert(lab, lab_vars, run_target):
    settings = {"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}, "dedup_capacity_per_partition": 2000000}
    stage = override(lab_vars, "it-stage", settings, valid_for="2h", override_reason="integration")
    version0, config0 = config_of(lab)

    checked = run_target("config_override", stage, check=True, diff=True)
    result = checked.results["override"]
    assert checked.rc == 0, checked.stdout
    assert result["changed"] is True and config_of(lab)[0] == version0
    assert result["diff"]["after"]["config"]["dedup_capacity_per_partition"] == 2000000

    real = run_target("config_override", stage)
    result = real.results["override"]
    assert real.rc == 0 and result["changed"] is True and result["action"] == "created"
    version1, config1 = config_of(lab)
    assert version1 == version0 + 1 == result["config_version"]
    assert config1["metrics"]["anti_cheat_flags"]["lateness_allowance_ms"] == 600000
    entry = config1["annotations"]["ceptra.backfill/overrides"]["it-stage"]
    assert entry["before"]["dedup_capacity_per_partition"] == config0["dedup_capacity_per_partition"]
    assert entry["config_version_after"] == version1 and entry["reason"] == "integration"

    again = run_target("config_override", stage)
    assert again.results["override"]["changed"] is False and config_of(lab)[0] == version1

    revert = named(lab_vars, "it-stage")
    checked = run_target("config_revert", revert, check=True)
    assert checked.results["revert"]["changed"] is True and config_of(lab)[0] == version1
    done = run_target("config_revert", revert)
    assert done.results["revert"]["changed"] is True and done.results["revert"]["conflicts"] == []
    restored = config_of(lab)[1]
    assert restored == config0
    assert run_target("config_revert", revert).results["revert"]["changed"] is False

    status, _headers, body = lab.request("GET", "/v1/audit?kind=override", role="observer")
    actions = [rec["details"]["action"] for rec in body["records"] if rec["details"].get("name") == "it-stage"]
    assert actions == ["created", "reverted"]


def test_valid_for_1s_is_reverted_by_the_sweep(lab, lab_vars, run_target):
    _version, config0 = config_of(lab)
    staged = run_target("config_override", override(lab_vars, "it-short", {"watermark_guard_ms": 900}, valid_for="1s"))
    assert staged.results["override"]["changed"] is True
    assert config_of(lab)[1]["watermark_guard_ms"] == 900
    time.sleep(1.5)
    swept = run_target("config_sweep_and_info", lab_vars)
    result = swept.results["sweep"]
    assert swept.rc == 0 and result["changed"] is True and "it-short" in result["reverted"]
    assert config_of(lab)[1]["watermark_guard_ms"] == config0["watermark_guard_ms"]
    assert "it-short" not in [o["name"] for o in swept.results["info"]["overrides"]]
    idle = run_target("config_sweep", lab_vars)
    assert idle.results["sweep"]["changed"] is False


def test_revert_after_someone_changed_a_key_reports_the_conflict(lab, lab_vars, run_target):
    settings = {"max_future_skew_ms": 9000, "partitions": {"2": {"lateness_allowance_ms": 120000}}}
    staged = run_target("config_override", override(lab_vars, "it-conflict", settings))
    assert staged.results["override"]["changed"] is True
    status, _h, _b = lab.request("PATCH", "/v1/config", body={"max_future_skew_ms": 7000}, role="operator")
    assert status == 200
    reverted = run_target("config_revert", named(lab_vars, "it-conflict"))
    result = reverted.results["revert"]
    assert result["changed"] is True
    assert [c["key"] for c in result["conflicts"]] == ["max_future_skew_ms"]
    assert result["conflicts"][0]["current"] == 7000 and result["conflicts"][0]["expected"] == 9000
    config = config_of(lab)[1]
    assert config["max_future_skew_ms"] == 7000
    assert "2" not in config["partitions"]
    assert "it-conflict" not in config["annotations"].get("ceptra.backfill/overrides", {})


def test_two_overrides_on_different_keys_revert_independently(lab, lab_vars, run_target):
    _version, config0 = config_of(lab)
    run_target("config_two_overrides", dict(lab_vars, a_name="it-a", a_settings={"metrics": {"m_a": {"correction_horizon_ms": 7200000}}},
                                            b_name="it-b", b_settings={"raw_retention_ms": 172800000}))
    first = run_target("config_revert", named(lab_vars, "it-a"))
    assert first.results["revert"]["changed"] is True and first.results["revert"]["conflicts"] == []
    config = config_of(lab)[1]
    assert "m_a" not in config["metrics"] and config["raw_retention_ms"] == 172800000
    assert list(config["annotations"]["ceptra.backfill/overrides"]) == ["it-b"]
    run_target("config_revert", named(lab_vars, "it-b"))
    assert config_of(lab)[1] == config0


LANES_BUNDLE = """
bundle:
  name: it_lanes
  def_version: 1
  lane_domains:
    player_id: { max_per_partition: 16 }
    queue: { max_per_partition: 2 }
workflow:
  name: it_lanes
  phases:
    - name: fast
      type: aggregate.promql
      options:
        window: 15s
        queries:
          flags_by_queue:
            expression: sum by (player_id, queue)(increase(anti_cheat_flags_total[15s]))
"""


# The tasks of the config_refusals target, and what each refusal says.
REFUSALS = [
    ("bound", "[15000, 300000]"),
    ("flow", "[65536, 8388608]"),
    ("domain", "lane_domains.player_id.max_per_partition: 100 is out of bounds; allowed [1, 64]"),
    ("bundle", "flags_by_queue by (player_id, queue) would project 128"),
]


def test_refused_before_any_patch(lab, lab_vars, run_target, tmp_path):
    bundle = tmp_path / "lanes.yaml"
    bundle.write_text(LANES_BUNDLE)
    writes, (version, _config) = config_writes(lab), config_of(lab)
    refused = run_target("config_refusals", dict(lab_vars, bundle_src=str(bundle)))
    for task, needle in REFUSALS:
        result = refused.results[task]
        assert refused.status(task) == "failed" and needle in result["msg"], result
        assert "refused before anything was sent" in result["msg"]
    # the lab's audit log shows no config write, and the version did not move
    assert config_writes(lab) == writes and config_of(lab)[0] == version


def test_observer_gets_a_clear_permission_error(lab, lab_vars, run_target):
    version = config_of(lab)[0]
    observer = dict(lab_vars, ceptra_token=lab.tokens["observer"])
    denied = run_target("config_override", override(observer, "it-observer", {"watermark_guard_ms": 300}), verbosity=3)
    result = denied.results["override"]
    assert denied.status("override") == "failed" and result["status"] == 403, result
    assert "Could not stage override it-observer" in result["msg"] and "operator" in result["msg"]
    assert lab.tokens["observer"] not in denied.stdout
    assert config_of(lab)[0] == version


def test_mutual_tls_operator_stages_and_observer_is_refused(lab_factory, run_target, tmp_path):
    from ceptra_lab.certs import write_certs

    certs = tmp_path / "certs"
    write_certs(str(certs))
    tls_lab = lab_factory(partitions=2, test_mode=True, tls_dir=str(certs))

    def as_role(role):
        return override({"ceptra_url": tls_lab.url, "ceptra_client_cert": str(certs / (role + ".pem")),
                         "ceptra_client_key": str(certs / (role + "-key.pem")), "ceptra_ca_path": str(certs / "ca.pem")},
                        "it-mtls", {"watermark_guard_ms": 400})

    denied = run_target("config_override", as_role("observer"))
    result = denied.results["override"]
    assert denied.status("override") == "failed" and result["status"] == 403
    assert "spiffe://ceptra.lab/role/observer" in result["msg"] and "lacks role operator" in result["msg"]
    staged = run_target("config_override", as_role("operator"))
    assert staged.status("override") == "ok" and staged.results["override"]["changed"] is True
    assert staged.results["override"]["override"]["after"] == {"watermark_guard_ms": 400}


class RacingClient:
    """The real client, with another writer changing the config right before our next PATCHes."""

    def __init__(self, client, lab, patches):
        self.client, self.lab, self.patches = client, lab, list(patches)

    def get_json(self, route, **kw):
        return self.client.get_json(route, **kw)

    def request(self, method, route, **kw):
        if method == "PATCH" and route == "config" and self.patches:
            status, _h, _b = self.lab.request("PATCH", "/v1/config", body=self.patches.pop(0), role="operator")
            assert status == 200
        return self.client.request(method, route, **kw)


def test_412_against_the_lab_retries_only_when_untouched(lab):
    from ansible_collections.ceptra.backfill.plugins.module_utils import _config_ledger as cl
    from ansible_collections.ceptra.backfill.plugins.module_utils import _config_manager as cm
    from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient

    with CeptraClient(lab.url, token=lab.tokens["operator"]) as client:
        racing = RacingClient(client, lab, [{"compacted_retention_ms": 63072000000}])
        result = cm.ConfigManager(racing, actor="it").stage("it-race", {"pane_size_ms": 500}, cl.Window(valid_for="1h"))
        assert result["changed"] and result["previous_version"] == result["config_version"] - 1
        config = config_of(lab)[1]
        assert config["pane_size_ms"] == 500 and config["compacted_retention_ms"] == 63072000000

        version = config_of(lab)[0]
        racing = RacingClient(client, lab, [{"pane_size_ms": 1000}])
        with pytest.raises(cl.ConfigManagerError, match="pane_size_ms"):
            cm.ConfigManager(racing, actor="it").stage("it-race", {"pane_size_ms": 750}, cl.Window(valid_for="1h"))
        assert config_of(lab)[0] == version + 1  # only the other writer's change landed
        assert config_of(lab)[1]["annotations"]["ceptra.backfill/overrides"]["it-race"]["after"] == {"pane_size_ms": 500}
        cm.ConfigManager(client, actor="it").revert("it-race")


ACTIVE_BUNDLE = """
bundle:
  name: it_active_lanes
  def_version: 1
  lane_domains:
    player_id: { max_per_partition: 32 }
workflow:
  name: it_active_lanes
  phases:
    - name: fast
      type: aggregate.promql
      options:
        window: 15s
        queries:
          anti_cheat_flags:
            expression: sum by (player_id)(increase(anti_cheat_flags_total{queue="ranked"}[15s]))
          matchmaking_latency_p95:
            expression: quantile_over_time(0.95, matchmaking_latency_seconds{queue="ranked"}[15s])
"""


def test_lane_budget_with_an_active_bundle(lab_factory, run_target, tmp_path):
    bundle_path = str(tmp_path / "active.yaml")
    with open(bundle_path, "w", encoding="utf-8") as handle:
        handle.write(ACTIVE_BUNDLE)
    text = ACTIVE_BUNDLE
    active_lab = lab_factory(partitions=2, test_mode=True)
    status, _h, uploaded = active_lab.request("POST", "/v1/definitions", data=text.encode(),
                                              headers={"Content-Type": "application/yaml"}, role="operator")
    assert status == 200
    for _attempt in range(60):
        status, _h, barrier = active_lab.request("POST", "/v1/activate", body={"bundle_id": uploaded["bundle_id"]}, role="operator")
        if barrier.get("state") == "committed":
            break
        time.sleep(0.25)
    assert barrier.get("state") == "committed", barrier
    lab_vars = {"ceptra_url": active_lab.url, "ceptra_token": active_lab.tokens["operator"]}
    writes = config_writes(active_lab)
    lanes = run_target("config_lane_budget", dict(lab_vars, bundle_src=bundle_path))
    over, near = lanes.results["over"], lanes.results["near"]
    assert lanes.status("over") == "failed"
    # a domain over LANE_MAX_PER_PARTITION is out of its bound (the lab's table) before any projection
    assert "lane_domains.player_id.max_per_partition: 70 is out of bounds; allowed [1, 64]" in over["msg"]
    assert config_writes(active_lab) == writes + 1  # only the accepted override wrote
    assert lanes.status("near") == "ok" and near["changed"] is True
    warnings = json.dumps(near.get("warnings", []))
    assert "anti_cheat_flags by (player_id) would project 50 lanes" in warnings
    assert "the cluster warned" in warnings and "not the active bundle" not in warnings
    projections = {p["metric"]: p["projected_lanes"] for p in near["lane_projections"]}
    assert projections["anti_cheat_flags"] == 50 and projections["matchmaking_latency_p95"] == 1
