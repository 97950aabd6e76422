"""config_override, config_override_sweep and config_info as modules (args in, JSON out) over the fake control plane."""

import json

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_ledger as cl
from ansible_collections.ceptra.backfill.plugins.module_utils import _config_manager as cm
from ansible_collections.ceptra.backfill.plugins.modules import config_info, config_override, config_override_sweep

from ..test_support.control_plane import config_plane

SETTINGS = {"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}}


def test_override_check_real_rerun_and_diff(run_module):
    fake = config_plane()
    args = {"name": "bf", "settings": SETTINGS, "valid_for": "2h", "actor": "ci"}
    failed, checked = run_module(config_override, args, fake, check_mode=True, diff=True)
    assert not failed and checked["changed"] is True and fake.version == 1 and fake.patches == []
    assert checked["diff"]["after"]["config"]["metrics"] == SETTINGS["metrics"]
    failed, real = run_module(config_override, args, fake)
    assert not failed and real["changed"] is True and "diff" not in real and fake.version == 2
    assert real["override"]["who"] == "ci" and real["action"] == "created" and fake.closed
    failed, again = run_module(config_override, args, fake)
    assert again["changed"] is False and fake.version == 2
    failed, gone = run_module(config_override, {"name": "bf", "state": "absent"}, fake)
    assert gone["changed"] is True and gone["action"] == "reverted" and fake.config["metrics"] == {}
    failed, gone_again = run_module(config_override, {"name": "bf", "state": "absent"}, fake)
    assert gone_again["changed"] is False


def test_override_refusal_is_a_clear_failure_without_patch(run_module):
    fake = config_plane()
    failed, result = run_module(config_override, {"name": "bad", "settings": {"checkpoint_full_interval_ms": 1000},
                                                  "valid_for": "1h"}, fake)
    assert failed and result["failed"]
    assert "refused before anything was sent" in result["msg"] and "[15000, 300000]" in result["msg"]
    assert result["violations"][0]["path"] == "checkpoint_full_interval_ms"
    assert fake.patches == []


def test_bad_window_and_missing_window(run_module):
    fake = config_plane()
    failed, result = run_module(config_override, {"name": "x", "settings": SETTINGS, "valid_for": "2 hours"}, fake)
    assert failed and "valid_for='2 hours' is not a duration" in result["msg"]
    failed, result = run_module(config_override, {"name": "x", "settings": SETTINGS}, fake)
    assert failed and "valid_for" in result["msg"] and "expires_at" in result["msg"]
    assert fake.patches == []


def test_observer_gets_a_permission_error(run_module):
    fake = config_plane(role="observer")
    failed, result = run_module(config_override, {"name": "x", "settings": SETTINGS, "valid_for": "1h"}, fake)
    assert failed and result["status"] == 403
    assert result["msg"].startswith("Could not stage override x:") and "lacks role operator" in result["msg"]
    assert "secret-token" not in json.dumps(result)


def test_lane_warning_is_a_module_warning(run_module):
    fake = config_plane()
    failed, result = run_module(config_override, {"name": "lanes", "valid_for": "1h",
                                                  "settings": {"lane_domains": {"player_id": {"max_per_partition": 50}}}},
                                fake)
    assert not failed, result
    assert "lane domain player_id alone would project 50 lanes" in json.dumps(result["warnings"])


def test_sweep_and_info(run_module):
    fake = config_plane()
    manager = cm.ConfigManager(fake, actor="t", clock=lambda: 1000.0)  # staged long ago: already expired
    manager.stage("old", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    cm.ConfigManager(fake, actor="t").stage("new", {"correction_horizon_ms": 7200000}, cl.Window(valid_for="1h"))
    failed, info = run_module(config_info, {}, fake)
    assert not failed and info["expired"] == ["old"] and [o["name"] for o in info["overrides"]] == ["new", "old"]
    failed, preview = run_module(config_override_sweep, {}, fake, check_mode=True)
    assert preview["changed"] and preview["reverted"] == ["old"] and fake.config["lateness_allowance_ms"] == 60000
    failed, swept = run_module(config_override_sweep, {}, fake)
    assert swept["reverted"] == ["old"] and [r["name"] for r in swept["remaining"]] == ["new"]
    assert fake.config["lateness_allowance_ms"] == 2000
    failed, idle = run_module(config_override_sweep, {}, fake)
    assert idle["changed"] is False
    failed, only = run_module(config_info, {"names": ["new"]}, fake)
    assert [o["name"] for o in only["overrides"]] == ["new"]
