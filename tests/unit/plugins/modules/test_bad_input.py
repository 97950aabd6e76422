"""Bad input to the modules (issue 11): every one ends the task with a message saying what to fix.

Each case runs the real module's ``main()`` (run_module) and asserts a failed result with a
message and no traceback: ``exception`` is what AnsibleModule adds to a crash's result.
"""

import json

import pytest

from ansible_collections.ceptra.backfill.plugins.modules import (
    activation,
    audit,
    audit_info,
    bundle,
    bundle_info,
    cluster_state_info,
    config_info,
    config_override,
    config_override_sweep,
    historic_replay,
    historic_replay_info,
    metrics_info,
    metrics_snapshot,
    readiness_info,
    snapshot_diff,
    wal_replay,
)

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import write_history

BUNDLE_YAML = "bundle:\n  name: unit\n  def_version: 1\n"


def _replay_args(tmp_path):
    return {"source": {"type": "sqlite", "path": str(tmp_path / "history.db")},
            "cursor_store": {"type": "sqlite", "path": str(tmp_path / "cursors.db")}, "run_id": "bad-url"}


# Every module that talks to the cluster, with the least options it needs besides the connection.
MODULES = {
    "activation": (activation, lambda tmp: {"bundle_id": "unit@0"}),
    "audit": (audit, lambda tmp: {"kind": "unit"}),
    "audit_info": (audit_info, lambda tmp: {}),
    "bundle": (bundle, lambda tmp: {"content": BUNDLE_YAML}),
    "bundle_info": (bundle_info, lambda tmp: {}),
    "cluster_state_info": (cluster_state_info, lambda tmp: {}),
    "config_info": (config_info, lambda tmp: {}),
    "config_override": (config_override, lambda tmp: {"name": "o", "settings": {"pane_size_ms": 500},
                                                      "valid_for": "1h"}),
    "config_override_sweep": (config_override_sweep, lambda tmp: {}),
    "historic_replay": (historic_replay, _replay_args),
    "historic_replay_info": (historic_replay_info, _replay_args),
    "metrics_info": (metrics_info, lambda tmp: {}),
    "metrics_snapshot": (metrics_snapshot, lambda tmp: {}),
    "readiness_info": (readiness_info, lambda tmp: {}),
    "snapshot_diff": (snapshot_diff, lambda tmp: {"part_id": "0", "other_part_id": "1"}),
    "wal_replay": (wal_replay, lambda tmp: {}),
}


def assert_clean_failure(failed, result, *needles):
    """A fatal with a message (containing every needle), not a crash."""
    assert failed, result
    assert "exception" not in result and "Traceback" not in json.dumps(result), result
    assert "MODULE FAILURE" not in result["msg"] and "Module failed" not in result["msg"]
    for needle in needles:
        assert needle in result["msg"], result["msg"]


@pytest.mark.parametrize("url, reason", [
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:99999", "Port out of range"),
    ("http://127.0.0.1:port", "Port could not be cast"),
])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_explains_a_malformed_url(name, url, reason, tmp_path, run_module):
    module, args = MODULES[name]
    failed, result = run_module(module, dict(args(tmp_path), url=url))
    assert_clean_failure(failed, result, "url %r is not a valid URL" % url, reason, "e.g. https://")


def test_url_userinfo_is_not_echoed(run_module):
    failed, result = run_module(cluster_state_info, {"url": "http://admin:hunter2@[::1"})
    assert_clean_failure(failed, result, "http://***@[::1")
    assert "hunter2" not in json.dumps(result)


@pytest.mark.parametrize("content", [12345, 1.5, True, ["a", "b"]])
def test_bundle_content_that_is_not_a_bundle(content, run_module):
    failed, result = run_module(bundle, {"content": content}, ControlPlane())
    assert_clean_failure(failed, result, "bundle content must be the bundle as YAML or JSON text or a mapping")


@pytest.mark.parametrize("window, needle", [
    ({"valid_for": "99999999999999999999d"}, "longer than an override may stay valid"),
    ({"valid_for": "3651d"}, "at most 3650d"),
    ({"expires_at": 10 ** 30}, "is not a time between 1970 and 9999"),
    ({"expires_at": "1e400"}, "is not a time"),
    ({"expires_at": 253402300800}, "is not a time between 1970 and 9999"),
    ({"expires_at": "9999-12-31T23:59:59Z"}, "more than 3650d (10 years) from now"),
])
def test_config_override_unrepresentable_window(window, needle, run_module):
    cluster = ControlPlane()
    failed, result = run_module(config_override, dict(window, name="o", settings={"pane_size_ms": 500}), cluster)
    assert_clean_failure(failed, result, needle)
    assert cluster.writes("config") == []


def test_config_override_refuses_a_knob_above_its_bound(run_module):
    cluster = ControlPlane()
    failed, result = run_module(config_override, {"name": "o", "valid_for": "1h",
                                                  "settings": {"correction_horizon_ms": 9223372036854775807}}, cluster)
    assert_clean_failure(failed, result, "correction_horizon_ms: 9223372036854775807 is out of bounds; "
                                         "allowed [0, 315360000000]")
    assert cluster.writes("config") == []


@pytest.mark.parametrize("option, needle", [
    ({"time_budget": -5}, "time_budget must be 0"),
    ({"max_rate": 0}, "max_rate must be a positive number"),
    ({"initial_rate": float("inf")}, "initial_rate must be a positive number, got inf"),
    ({"apply_lag_threshold_ms": float("nan")}, "apply_lag_threshold_ms must be a positive number"),
    ({"critical_factor": 1}, "critical_factor must be above 1"),
    ({"durability_wait_s": -1}, "durability_wait_s must be 0 or more seconds"),
    ({"max_event_bytes": 0}, "max_event_bytes must be a whole number of at least 1024"),
    ({"pushgateway_url": "pushgateway:9091"}, "pushgateway_url must be the Pushgateway's http:// or https://"),
    ({"pushgateway_url": "http://[::1"}, "pushgateway_url must be"),
    ({"partitions": []}, "partitions is an empty list"),
    ({"window_start_ns": 10, "window_end_ns": 5}, "window.start_ns must be below window.end_ns"),
    ({"source": {"type": "oracle"}}, "historic source: type must be 'sqlite' or 'postgresql'"),
    ({"cursor_store": {"type": "postgresql"}}, "cursor store: type postgresql needs 'dsn'"),
])
def test_historic_replay_bad_options_fail_before_anything_is_sent(option, needle, tmp_path, run_module):
    cluster = ControlPlane()
    args = dict(_replay_args(tmp_path), **option)
    write_history(str(tmp_path / "history.db"), parts=2, n=5)
    failed, result = run_module(historic_replay, args, cluster)
    assert_clean_failure(failed, result, needle)
    assert cluster.requests == []


SECRETS = ("hunter2-src", "hunter2-cur", "pg-user:hunter2-cur", "gw-secret")


@pytest.mark.parametrize("module", [historic_replay, historic_replay_info])
def test_replay_credentials_are_no_log_values(module, tmp_path, run_module):
    """DSN passwords (key/value and URL form) and Pushgateway userinfo never leave the module,
    not even in a message that echoes the DSN (psycopg's parse error quotes it)."""
    args = {"source": {"type": "postgresql", "dsn": "host=127.0.0.1 port=1 password=hunter2-src ==="},
            "cursor_store": {"type": "postgresql", "dsn": "postgresql://pg-user:hunter2-cur@127.0.0.1:1/ops"},
            "run_id": "secrets"}
    if module is historic_replay:
        args["pushgateway_url"] = "http://gw-user:gw-secret@[::1"
    failed, result = run_module(module, args, ControlPlane())
    assert failed and result["msg"]
    text = json.dumps(result)
    assert "********" in text    # Ansible's mask: the invocation shows the options without their secrets
    for secret in SECRETS:
        assert secret not in text, secret
