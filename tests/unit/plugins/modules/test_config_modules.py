"""config_override, config_override_sweep and config_info as modules (args in, JSON out) over the fake control plane."""

import json
import os
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils"))

from test_config_manager_fake import FakeControlPlane  # noqa: E402

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_ledger as cl  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils import _config_manager as cm  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.modules import config_info, config_override, config_override_sweep  # noqa: E402

CONN = {"url": "http://127.0.0.1:1", "token": "secret-token"}
SETTINGS = {"metrics": {"anti_cheat_flags": {"lateness_allowance_ms": 600000}}}


def run(module, args, fake, monkeypatch, capsys, check=False, diff=False):
    """Run a module's main() with ``args``; return (exit code, result dict)."""
    monkeypatch.setattr(module, "client_from_module", lambda _module: fake)
    full = dict(CONN, **args)
    if check:
        full["_ansible_check_mode"] = True
    if diff:
        full["_ansible_diff"] = True
    with patch_module_args(full):
        with pytest.raises(SystemExit) as exc:
            module.main()
    out = capsys.readouterr().out
    return exc.value.code, json.loads(out)


def test_override_check_real_rerun_and_diff(monkeypatch, capsys):
    fake = FakeControlPlane()
    args = {"name": "bf", "settings": SETTINGS, "valid_for": "2h", "actor": "ci"}
    code, checked = run(config_override, args, fake, monkeypatch, capsys, check=True, diff=True)
    assert code == 0 and checked["changed"] is True and fake.version == 1 and fake.patches == []
    assert checked["diff"]["after"]["config"]["metrics"] == SETTINGS["metrics"]
    code, real = run(config_override, args, fake, monkeypatch, capsys)
    assert code == 0 and real["changed"] is True and "diff" not in real and fake.version == 2
    assert real["override"]["who"] == "ci" and real["action"] == "created" and fake.closed
    code, again = run(config_override, args, fake, monkeypatch, capsys)
    assert again["changed"] is False and fake.version == 2
    code, gone = run(config_override, {"name": "bf", "state": "absent"}, fake, monkeypatch, capsys)
    assert gone["changed"] is True and gone["action"] == "reverted" and fake.config["metrics"] == {}
    code, gone_again = run(config_override, {"name": "bf", "state": "absent"}, fake, monkeypatch, capsys)
    assert gone_again["changed"] is False


def test_override_refusal_is_a_clear_failure_without_patch(monkeypatch, capsys):
    fake = FakeControlPlane()
    code, result = run(config_override, {"name": "bad", "settings": {"checkpoint_full_interval_ms": 1000},
                                         "valid_for": "1h"}, fake, monkeypatch, capsys)
    assert code == 1 and result["failed"]
    assert "refused before anything was sent" in result["msg"] and "[15000, 300000]" in result["msg"]
    assert result["violations"][0]["path"] == "checkpoint_full_interval_ms"
    assert fake.patches == []


def test_bad_window_and_missing_window(monkeypatch, capsys):
    fake = FakeControlPlane()
    code, result = run(config_override, {"name": "x", "settings": SETTINGS, "valid_for": "2 hours"}, fake, monkeypatch, capsys)
    assert code == 1 and "valid_for='2 hours' is not a duration" in result["msg"]
    code, result = run(config_override, {"name": "x", "settings": SETTINGS}, fake, monkeypatch, capsys)
    assert code == 1 and "valid_for" in result["msg"] and "expires_at" in result["msg"]
    assert fake.patches == []


def test_observer_gets_a_permission_error(monkeypatch, capsys):
    fake = FakeControlPlane(role="observer")
    code, result = run(config_override, {"name": "x", "settings": SETTINGS, "valid_for": "1h"}, fake, monkeypatch, capsys)
    assert code == 1 and result["status"] == 403
    assert result["msg"].startswith("Could not stage override x:") and "lacks role operator" in result["msg"]
    assert "secret-token" not in json.dumps(result)


def test_lane_warning_is_a_module_warning(monkeypatch, capsys):
    fake = FakeControlPlane()
    code, result = run(config_override, {"name": "lanes", "valid_for": "1h",
                                         "settings": {"lane_domains": {"player_id": {"max_per_partition": 50}}}},
                       fake, monkeypatch, capsys)
    assert code == 0, result
    assert "lane domain player_id alone would project 50 lanes" in json.dumps(result["warnings"])


def test_sweep_and_info(monkeypatch, capsys):
    fake = FakeControlPlane()
    manager = cm.ConfigManager(fake, actor="t", clock=lambda: 1000.0)  # staged long ago: already expired
    manager.stage("old", {"lateness_allowance_ms": 60000}, cl.Window(valid_for="1s"))
    cm.ConfigManager(fake, actor="t").stage("new", {"correction_horizon_ms": 7200000}, cl.Window(valid_for="1h"))
    code, info = run(config_info, {}, fake, monkeypatch, capsys)
    assert code == 0 and info["expired"] == ["old"] and [o["name"] for o in info["overrides"]] == ["new", "old"]
    code, preview = run(config_override_sweep, {}, fake, monkeypatch, capsys, check=True)
    assert preview["changed"] and preview["reverted"] == ["old"] and fake.config["lateness_allowance_ms"] == 60000
    code, swept = run(config_override_sweep, {}, fake, monkeypatch, capsys)
    assert swept["reverted"] == ["old"] and [r["name"] for r in swept["remaining"]] == ["new"]
    assert fake.config["lateness_allowance_ms"] == 2000
    code, idle = run(config_override_sweep, {}, fake, monkeypatch, capsys)
    assert idle["changed"] is False
    code, only = run(config_info, {"names": ["new"]}, fake, monkeypatch, capsys)
    assert [o["name"] for o in only["overrides"]] == ["new"]
