"""Config manager: staging, idempotency, If-Match retries, validation, revert, sweep (fake control plane)."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_ledger as cl
from ansible_collections.ceptra.backfill.plugins.module_utils import _config_manager as cm
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity

from ..test_support.control_plane import LANES_BUNDLE as BUNDLE
from ..test_support.control_plane import config_plane

T0 = 1_800_000_000.0
BACKFILL = {"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}, "dedup_capacity_per_partition": 2000000}


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def manager(fake, clock=None, **kw):
    return cm.ConfigManager(fake, actor="alice", clock=clock or Clock(), **kw)


def ledger(fake):
    return fake.config["annotations"].get(cl.LEDGER_KEY, {})


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 5m ", 300), ("1w", 604800)])
def test_parse_duration_accepts_units(text, seconds):
    assert cl.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "2 hours", "1.5h", "h", "-1s", "0s", "1y", None])
def test_parse_duration_rejects_with_a_hint(text):
    with pytest.raises(cl.ConfigManagerError, match="valid_for"):
        cl.parse_duration(text)


def test_parse_ts_forms():
    assert cl.parse_ts("2027-01-15T08:00:00Z") == cl.parse_ts("2027-01-15T09:00:00+01:00")
    assert cl.parse_ts("1800000000") == 1800000000.0
    assert cl.parse_ts(1800000000.5) == 1800000000.5
    assert cl.parse_ts(cl.format_ts(T0 + 0.25)) == T0 + 0.25
    with pytest.raises(cl.ConfigManagerError, match="no time zone"):
        cl.parse_ts("2027-01-15T08:00:00")
    with pytest.raises(cl.ConfigManagerError, match="ISO 8601"):
        cl.parse_ts("tomorrow")


def test_window_needs_exactly_one():
    with pytest.raises(cl.ConfigManagerError, match="exactly one"):
        cl.Window()
    with pytest.raises(cl.ConfigManagerError, match="exactly one"):
        cl.Window(valid_for="1h", expires_at="2030-01-01T00:00:00Z")


def test_expires_at_in_the_past_is_refused_without_patch():
    fake = config_plane()
    with pytest.raises(cl.ConfigManagerError, match="not in the future"):
        manager(fake).stage("x", {"lateness_allowance_ms": 5000}, cl.Window(expires_at=T0 - 1))
    assert fake.patches == []


# --------------------------------------------------------------------------- staging


def test_stage_writes_settings_and_ledger_in_one_conditional_patch():
    fake = config_plane()
    result = manager(fake).stage("backfill", BACKFILL, cl.Window(valid_for="2h"), reason="INC-7")
    assert result["changed"] and result["action"] == "created"
    assert len(fake.patches) == 1
    body, headers = fake.patches[0].body, fake.patches[0].headers
    assert headers["If-Match"] == '"1"'
    # complete value of each touched top-level key, ledger in the same patch
    assert body["metrics"] == {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}
    assert body["dedup_capacity_per_partition"] == 2000000
    assert "backfill" in body["annotations"][cl.LEDGER_KEY]
    entry = ledger(fake)["backfill"]
    assert entry["who"] == "alice" and entry["reason"] == "INC-7"
    assert entry["before"] == {"dedup_capacity_per_partition": 1000000,
                               "metrics.anti_cheat_flags.lateness_allowance_ms": cl.ABSENT}
    assert entry["after"]["metrics.anti_cheat_flags.lateness_allowance_ms"] == 600000
    assert entry["config_version_before"] == 1 and entry["config_version_after"] == 2 == fake.version
    assert cl.parse_ts(entry["expires_at"]) == T0 + 7200
    assert result["remaining_s"] == 7200 and result["config_version"] == 2
    assert fake.config["dedup_capacity_per_partition"] == 2000000
    assert fake.audit[0]["kind"] == "override"
    assert fake.audit[0]["details"]["name"] == "backfill" and fake.audit[0]["details"]["action"] == "created"


def test_rerun_is_idempotent_and_keeps_the_expiry():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("backfill", BACKFILL, cl.Window(valid_for="2h"))
    clock.now += 600
    again = manager(fake, clock).stage("backfill", BACKFILL, cl.Window(valid_for="2h"))
    assert again["changed"] is False and again["action"] == "unchanged"
    assert len(fake.patches) == 1 and len(fake.audit) == 1
    assert cl.parse_ts(again["expires_at"]) == T0 + 7200


def test_extend_and_changed_valid_for_move_the_expiry():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("b", BACKFILL, cl.Window(valid_for="2h"))
    clock.now += 600
    longer = manager(fake, clock).stage("b", BACKFILL, cl.Window(valid_for="4h"))
    assert longer["changed"] and longer["action"] == "extended"
    assert cl.parse_ts(longer["expires_at"]) == T0 + 4 * 3600  # counted from staging
    extended = manager(fake, clock).stage("b", BACKFILL, cl.Window(valid_for="4h", extend=True))
    assert cl.parse_ts(extended["expires_at"]) == clock.now + 4 * 3600
    assert ledger(fake)["b"]["before"]["dedup_capacity_per_partition"] == 1000000


def test_same_absolute_expiry_is_unchanged():
    fake = config_plane()
    manager(fake).stage("b", BACKFILL, cl.Window(expires_at="2030-01-01T00:00:00Z"))
    again = manager(fake).stage("b", BACKFILL, cl.Window(expires_at="2030-01-01T00:00:00Z"))
    assert again["changed"] is False


def test_update_keeps_original_before_and_gives_back_dropped_keys():
    fake = config_plane()
    manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    updated = manager(fake).stage("b", {"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 900000}},
                                        "lateness_allowance_ms": 5000}, cl.Window(valid_for="1h"))
    assert updated["changed"] and updated["action"] == "updated"
    assert updated["restored_keys"] == ["dedup_capacity_per_partition"]
    assert fake.config["dedup_capacity_per_partition"] == 1000000
    entry = ledger(fake)["b"]
    assert entry["before"] == {"metrics.anti_cheat_flags.lateness_allowance_ms": cl.ABSENT, "lateness_allowance_ms": 2000}
    assert fake.config["metrics"]["anti_cheat_flags"]["lateness_allowance_ms"] == 900000


def test_check_mode_computes_the_change_without_writing():
    fake = config_plane()
    result = manager(fake, check_mode=True).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    assert result["changed"] is True and fake.patches == [] and fake.audit == [] and fake.version == 1
    diff = result["diff"]
    assert diff["before"]["override"] is None and diff["after"]["override"]["name"] == "b"
    assert diff["after"]["config"]["dedup_capacity_per_partition"] == 2000000
    assert cl.LEDGER_KEY not in diff["after"]["config"]["annotations"]


def test_null_setting_deletes_a_key_for_the_override_and_revert_restores_it():
    fake = config_plane(config=dict(config_plane().config, partitions={"2": {"ingress_gate": "warmup"}}))
    manager(fake).stage("open2", {"partitions": {"2": {"ingress_gate": None}}}, cl.Window(valid_for="1h"))
    assert fake.config["partitions"]["2"] == {}
    manager(fake).revert("open2")
    assert fake.config["partitions"] == {"2": {"ingress_gate": "warmup"}}


# --------------------------------------------------------------------------- If-Match / 412


def test_412_retried_when_untouched_keys_moved():
    fake = config_plane()
    fake.before_patch.append(lambda f: f.external_write({"lateness_allowance_ms": 3000}))
    result = manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    assert result["changed"] and len(fake.patches) == 2
    assert fake.patches[1].headers["If-Match"] == '"2"'
    assert fake.config["lateness_allowance_ms"] == 3000  # the other writer's change survived
    assert ledger(fake)["b"]["config_version_before"] == 2


def test_412_not_retried_when_a_touched_key_moved():
    fake = config_plane()
    fake.before_patch.append(lambda f: f.external_write({"dedup_capacity_per_partition": 1500000}))
    with pytest.raises(cl.ConfigManagerError, match="dedup_capacity_per_partition") as err:
        manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    assert err.value.details["conflict_keys"] == ["dedup_capacity_per_partition"]
    assert len(fake.patches) == 1 and cl.LEDGER_KEY not in fake.config["annotations"]


def test_412_gives_up_after_max_attempts():
    fake = config_plane()
    for n in range(cm.MAX_CAS_ATTEMPTS):
        fake.before_patch.append(lambda f, n=n: f.external_write({"lateness_allowance_ms": 3000 + n}))
    with pytest.raises(cl.ConfigManagerError, match="gave up"):
        manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("settings,needle", [
    ({"checkpoint_full_interval_ms": 10000}, "checkpoint_full_interval_ms"),
    ({"checkpoint_full_interval_ms": 300001}, "[15000, 300000]"),
    ({"partition_flow": {"max_event_bytes": 1024}}, "[65536, 8388608]"),
    ({"lateness_allowance_ms": -1}, "[0, 315360000000]"),
    # the knobs' upper bounds (the lab's table, _config_bounds): a value the cluster would refuse
    ({"correction_horizon_ms": 9223372036854775807}, "allowed [0, 315360000000]"),
    ({"dedup_capacity_per_partition": 10 ** 12}, "allowed [1, 100000000]"),
    ({"metrics": {"m": {"correction_horizon_ms": 10 ** 15}}}, "allowed [0, 315360000000]"),
    ({"lateness_allowance_ms": "600s"}, "whole number"),
    ({"metrics": {"m": {"lateness_allowance_ms": True}}}, "whole number"),
    ({"readiness": {"healthy_partition_ratio": 0}}, "(0, 1]"),
    ({"readiness": {"healthy_partition_ratio": 1.5}}, "(0, 1]"),
    ({"partitions": {"1": {"ingress_gate": "closed"}}}, "open or warmup"),
    ({"partitions": {"9": {"ingress_gate": "open"}}}, "unknown partition 9"),
    ({"latenes_allowance_ms": 5}, "unknown top-level key; did you mean lateness_allowance_ms?"),
    ({"partition_flow": {"max_evnts": 5}}, "did you mean partition_flow.max_events?"),
    ({"metrics": {"m": {"lateness_ms": 5}}}, "per-metric keys"),
    ({"annotations": {"x": 1}}, "reserved"),
    ({"lane_domains": {"player_id": {"max_per_partition": 0}}}, "[1, 64]"),
])
def test_bounds_refused_before_any_patch(settings, needle):
    fake = config_plane()
    with pytest.raises(cl.ConfigManagerError) as err:
        manager(fake).stage("bad", settings, cl.Window(valid_for="1h"))
    assert needle in err.value.message and "refused before anything was sent" in err.value.message
    assert fake.patches == [] and fake.version == 1


@pytest.mark.parametrize("settings,needle", [({}, "empty"), ({"metrics": {}}, "empty mapping"),
                                             ({"a.b": 1}, "without dots"), ("x", "mapping")])
def test_malformed_settings(settings, needle):
    fake = config_plane()
    with pytest.raises(cl.ConfigManagerError, match=needle):
        manager(fake).stage("bad", settings, cl.Window(valid_for="1h"))
    assert fake.patches == []


def test_dedup_shrink_refused_while_occupancy_high():
    fake = config_plane()
    fake.dedup_occupancy = 800000
    with pytest.raises(cl.ConfigManagerError, match="over 70%"):
        manager(fake).stage("shrink", {"dedup_capacity_per_partition": 500000}, cl.Window(valid_for="1h"))
    assert fake.patches == []
    fake.dedup_occupancy = 100
    assert manager(fake).stage("shrink", {"dedup_capacity_per_partition": 500000}, cl.Window(valid_for="1h"))["changed"]


def test_lane_budget_with_bundle_projects_products_of_domains():
    fake = config_plane()
    # player_id 40 alone is fine, but flags_by_queue = 40 x queue(2) = 80 > 64
    with pytest.raises(cl.ConfigManagerError, match="flags_by_queue.*80 lanes"):
        manager(fake).stage("lanes", {"lane_domains": {"player_id": {"max_per_partition": 40}}},
                            cl.Window(valid_for="1h"), bundle_content=dict(BUNDLE))
    assert fake.patches == []
    result = manager(fake).stage("lanes", {"lane_domains": {"player_id": {"max_per_partition": 25}}},
                                 cl.Window(valid_for="1h"), bundle_content=dict(BUNDLE))
    assert result["changed"] and any("50 lanes" in w for w in result["warnings"])
    assert {"metric": "flags_by_queue", "labels": ["player_id", "queue"], "projected_lanes": 50} in result["lane_projections"]


def test_lane_budget_from_definitions_when_the_cluster_lists_queries():
    fake = config_plane(expose_queries=True)
    with pytest.raises(cl.ConfigManagerError, match="LANE_MAX_PER_PARTITION=64"):
        manager(fake).stage("lanes", {"lane_domains": {"queue": {"max_per_partition": 3}}}, cl.Window(valid_for="1h"))
    assert fake.patches == []


def test_lane_budget_without_queries_checks_each_domain_and_warns():
    fake = config_plane()
    with pytest.raises(cl.ConfigManagerError, match=r"max_per_partition: 65 is out of bounds; allowed \[1, 64\]"):
        manager(fake).stage("lanes", {"lane_domains": {"player_id": {"max_per_partition": 65}}}, cl.Window(valid_for="1h"))
    assert fake.patches == []
    ok = manager(fake).stage("lanes", {"lane_domains": {"player_id": {"max_per_partition": 48}}}, cl.Window(valid_for="1h"))
    assert any("per lane domain only" in w for w in ok["warnings"]) and any("48 lanes" in w for w in ok["warnings"])


def test_server_422_surfaces_as_error_without_ledger():
    fake = config_plane()
    # The fake server checks the cadence itself; bypass local validation to prove the second line holds.
    plan = cm.plan_stage(fake.config, 1, "x", {"checkpoint_full_interval_ms": 1000}, cl.Window(valid_for="1h"), T0, "a")
    with pytest.raises(CeptraError) as err:
        cm.run_transaction(fake, lambda cfg, ver: plan)
    assert err.value.status == 422 and fake.version == 1


# --------------------------------------------------------------------------- revert


def test_revert_restores_exactly_and_removes_ledger():
    fake = config_plane()
    original = dict(fake.config)
    manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    result = manager(fake).revert("b")
    assert result["changed"] and result["action"] == "reverted" and result["conflicts"] == []
    assert sorted(result["restored_keys"]) == ["dedup_capacity_per_partition", "metrics.anti_cheat_flags.lateness_allowance_ms"]
    assert fake.config == original  # metrics.anti_cheat_flags pruned, ledger key removed
    assert fake.audit[-1]["details"]["action"] == "reverted"
    again = manager(fake).revert("b")
    assert again["changed"] is False and again["action"] == "absent" and len(fake.patches) == 2


def test_revert_reports_conflict_and_leaves_that_key():
    fake = config_plane()
    manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    fake.external_write({"dedup_capacity_per_partition": 3000000})
    result = manager(fake).revert("b")
    assert result["changed"]
    assert result["conflicts"] == [{"key": "dedup_capacity_per_partition", "expected": 2000000,
                                    "current": 3000000, "before": 1000000}]
    assert fake.config["dedup_capacity_per_partition"] == 3000000
    assert "anti_cheat_flags" not in fake.config["metrics"]
    assert "b" not in ledger(fake)
    assert fake.audit[-1]["details"]["conflicts"][0]["key"] == "dedup_capacity_per_partition"


def test_two_overrides_on_different_keys_revert_independently():
    fake = config_plane()
    manager(fake).stage("late", {"metrics": {"m1": {"lateness_allowance_ms": 60000}}}, cl.Window(valid_for="1h"))
    manager(fake).stage("dedup", {"dedup_capacity_per_partition": 2000000,
                                  "metrics": {"m2": {"correction_horizon_ms": 7200000}}}, cl.Window(valid_for="1h"))
    manager(fake).revert("late")
    assert "m1" not in fake.config["metrics"]
    assert fake.config["metrics"]["m2"] == {"correction_horizon_ms": 7200000}
    assert fake.config["dedup_capacity_per_partition"] == 2000000 and list(ledger(fake)) == ["dedup"]
    manager(fake).revert("dedup")
    assert fake.config["metrics"] == {} and fake.config["dedup_capacity_per_partition"] == 1000000
    assert cl.LEDGER_KEY not in fake.config["annotations"]


def test_stacked_overrides_hand_over_the_original_value():
    fake = config_plane()
    manager(fake).stage("first", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1h"))
    manager(fake).stage("second", {"lateness_allowance_ms": 90000}, cl.Window(valid_for="1h"))
    result = manager(fake).revert("first")
    assert result["conflicts"] == [] and result["handed_over"] == {"lateness_allowance_ms": "second"}
    assert fake.config["lateness_allowance_ms"] == 90000
    manager(fake).revert("second")
    assert fake.config["lateness_allowance_ms"] == 2000


def test_shared_created_container_survives_until_last_user_reverts():
    fake = config_plane(config={k: v for k, v in config_plane().config.items() if k != "metrics"})
    manager(fake).stage("a", {"metrics": {"m1": {"lateness_allowance_ms": 1}}}, cl.Window(valid_for="1h"))
    manager(fake).stage("b", {"metrics": {"m2": {"lateness_allowance_ms": 2}}}, cl.Window(valid_for="1h"))
    manager(fake).revert("a")
    assert fake.config["metrics"] == {"m2": {"lateness_allowance_ms": 2}}
    manager(fake).revert("b")
    assert "metrics" not in fake.config


def test_revert_check_mode_and_top_level_merge_server():
    fake = config_plane(top_level_merge=True)
    manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    preview = manager(fake, check_mode=True).revert("b")
    assert preview["changed"] and len(fake.patches) == 1
    manager(fake).revert("b")
    # nested deletions arrive as nulls, which a top-level-merge server stores: the manager fixes them
    assert fake.config["metrics"] == {} and fake.config["annotations"] == {}


def test_observer_gets_permission_error_and_nothing_changes():
    fake = config_plane(role="observer")
    with pytest.raises(CeptraError) as err:
        manager(fake).stage("b", BACKFILL, cl.Window(valid_for="1h"))
    assert err.value.status == 403 and fake.version == 1


# --------------------------------------------------------------------------- sweep and info


def test_sweep_reverts_only_expired_overrides():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("short", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    manager(fake, clock).stage("long", {"correction_horizon_ms": 7200000}, cl.Window(valid_for="1h"))
    nothing = manager(fake, clock).sweep()
    assert nothing["changed"] is False and nothing["reverted"] == []
    clock.now += 1.5
    preview = manager(fake, clock, check_mode=True).sweep()
    assert preview["reverted"] == ["short"] and fake.config["lateness_allowance_ms"] == 60000
    swept = manager(fake, clock).sweep()
    assert swept["changed"] and swept["reverted"] == ["short"] and swept["failed"] == {}
    assert [item["name"] for item in swept["remaining"]] == ["long"]
    assert swept["remaining"][0]["remaining_s"] == pytest.approx(3598.5)
    assert fake.config["lateness_allowance_ms"] == 2000 and fake.config["correction_horizon_ms"] == 7200000
    assert fake.audit[-1]["details"]["action"] == "expired"
    assert manager(fake, clock).sweep()["changed"] is False


def test_sweep_reports_conflicts_and_continues():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("a", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    manager(fake, clock).stage("b", {"correction_horizon_ms": 7200000}, cl.Window(valid_for="1s"))
    fake.external_write({"lateness_allowance_ms": 1})
    clock.now += 5
    swept = manager(fake, clock).sweep()
    assert swept["reverted"] == ["a", "b"] and list(swept["conflicts"]) == ["a"]
    assert fake.config["lateness_allowance_ms"] == 1 and fake.config["correction_horizon_ms"] == 3600000


def test_restaging_an_expired_override_restarts_its_window_and_keeps_before():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("a", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    clock.now += 10
    result = manager(fake, clock).stage("a", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    assert result["changed"] and result["action"] == "restaged"
    assert cl.parse_ts(result["expires_at"]) == clock.now + 1
    assert ledger(fake)["a"]["before"] == {"lateness_allowance_ms": 2000}


def test_info_lists_ledger_with_remaining_validity():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("a", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="10s"))
    manager(fake, clock).stage("b", {"correction_horizon_ms": 7200000}, cl.Window(valid_for="1h"))
    clock.now += 20
    info = manager(fake, clock).info()
    assert info["config_version"] == 3 and info["expired"] == ["a"]
    by_name = {item["name"]: item for item in info["overrides"]}
    assert by_name["a"]["remaining_s"] == 0 and by_name["b"]["remaining_s"] == 3580
    assert by_name["b"]["keys"] == ["correction_horizon_ms"] and by_name["b"]["who"] == "alice"


def test_default_actor_prefers_env():
    assert operator_identity(None, {"CEPTRA_ACTOR": "change-42"}) == "change-42"
    assert "@" in operator_identity(None, {})


@pytest.mark.parametrize("name", ["", "has space", "x" * 200, None])
def test_bad_names(name):
    with pytest.raises(cl.ConfigManagerError, match="override name"):
        manager(config_plane()).revert(name)


def test_stacked_override_with_the_same_value_survives_reverting_the_first():
    fake = config_plane()
    manager(fake).stage("first", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1h"))
    manager(fake).stage("second", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1h"))
    result = manager(fake).revert("first")
    assert result["handed_over"] == {"lateness_allowance_ms": "second"}
    assert fake.config["lateness_allowance_ms"] == 60000
    manager(fake).revert("second")
    assert fake.config["lateness_allowance_ms"] == 2000


def test_update_dropping_a_key_prunes_the_object_it_created():
    fake = config_plane()
    manager(fake).stage("b", {"metrics": {"m1": {"lateness_allowance_ms": 1}}}, cl.Window(valid_for="1h"))
    manager(fake).stage("b", {"metrics": {"m2": {"lateness_allowance_ms": 2}}}, cl.Window(valid_for="1h"))
    assert fake.config["metrics"] == {"m2": {"lateness_allowance_ms": 2}}
    assert ledger(fake)["b"]["created_containers"] == ["metrics.m2"]
    manager(fake).revert("b")
    assert fake.config["metrics"] == {}


def test_malformed_ledger_entries_fail_clearly_and_the_sweep_continues():
    fake, clock = config_plane(), Clock()
    manager(fake, clock).stage("good", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    fake.external_write({"annotations": {cl.LEDGER_KEY: {"junk": "not an entry",
                                                         "half": {"expires_at": "2000-01-01T00:00:00Z",
                                                                  "after": {"x": 1}, "before": {}}}}})
    clock.now += 5
    info = manager(fake, clock).info()
    assert sorted(info["expired"]) == ["good", "half", "junk"]
    swept = manager(fake, clock).sweep()
    assert swept["reverted"] == ["good"] and sorted(swept["failed"]) == ["half", "junk"]
    assert "keys x have no before-value" in swept["failed"]["half"] and "not an object" in swept["failed"]["junk"]
    assert fake.config["lateness_allowance_ms"] == 2000
    assert sorted(ledger(fake)) == ["half", "junk"]  # left for a person to repair
    with pytest.raises(cl.ConfigManagerError, match="malformed"):
        manager(fake, clock).stage("junk", {"lateness_allowance_ms": 1}, cl.Window(valid_for="1h"))
