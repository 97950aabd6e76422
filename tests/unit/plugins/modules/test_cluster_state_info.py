"""cluster_state_info against a scripted server."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "module_utils"))

from ansible_collections.ceptra.backfill.plugins.modules import cluster_state_info  # noqa: E402
from test_client_fakeserver import FakeServer, Reply, run_module  # noqa: E402

STATE = {
    "cluster": {"epoch": 3, "partitions": 2, "test_mode": True},
    "partitions": [
        {"part_id": "1", "leader": "ceptra-1", "commit_index": 9, "applied_index": 9,
         "unavailable_windows": [{"start_ts_ns": 10, "end_ts_ns": 20}]},
        {"part_id": "0", "leader": "ceptra-0", "commit_index": 5, "applied_index": 4},
    ],
}


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def test_returns_cluster_and_sorted_partitions(server, capsys):
    server.on("GET", "/v1/state", Reply(200, STATE))
    code, result = run_module(cluster_state_info.main, {"url": server.url, "token": "t"}, capsys)
    assert code == 0 and result["changed"] is False
    assert result["cluster"] == STATE["cluster"]
    assert result["partition_ids"] == ["0", "1"]
    assert result["unavailable_windows"] == {"0": [], "1": [{"start_ts_ns": 10, "end_ts_ns": 20}]}


def test_partition_filter_and_unknown_partition(server, capsys):
    server.on("GET", "/v1/state", Reply(200, STATE))
    code, result = run_module(cluster_state_info.main, {"url": server.url, "partitions": ["1"]}, capsys)
    assert [p["part_id"] for p in result["partitions"]] == ["1"]
    code, result = run_module(cluster_state_info.main, {"url": server.url, "partitions": ["7"]}, capsys)
    assert code == 1 and result["failed"]
    assert result["msg"] == "Unknown partition id(s) 7; the cluster has partitions 0, 1"


def test_tolerates_partitions_keyed_by_id_with_partition_id(server, capsys):
    server.on("GET", "/v1/state", Reply(200, {"partitions": {"0": {"leader": "a"}, "1": {"partition_id": 1}}}))
    code, result = run_module(cluster_state_info.main, {"url": server.url}, capsys)
    assert code == 0 and result["partition_ids"] == ["0", "1"] and result["cluster"] == {}


def test_error_is_readable_and_secret_free(server, capsys):
    server.on("GET", "/v1/state", Reply(401, {"error": "unknown bearer token", "status": 401}))
    code, result = run_module(cluster_state_info.main, {"url": server.url, "token": "hush-hush"}, capsys)
    assert code == 1
    assert result["msg"].startswith("Could not read the cluster state: GET /v1/state failed with 401: unknown bearer token")
    assert result["status"] == 401
    assert "hush-hush" not in capsys.readouterr().out + str(result)


def test_connection_options_from_environment(server, capsys, monkeypatch):
    server.on("GET", "/gw/state", Reply(200, STATE))
    monkeypatch.setenv("CEPTRA_URL", server.url)
    monkeypatch.setenv("CEPTRA_TOKEN", "env-token")
    monkeypatch.setenv("CEPTRA_ROUTES", '{"state": "/gw/state"}')
    code, result = run_module(cluster_state_info.main, {}, capsys)
    assert code == 0 and result["partition_ids"] == ["0", "1"]
    assert server.calls()[0].headers["Authorization"] == "Bearer env-token"


def test_client_cert_without_key_is_refused(capsys):
    code, result = run_module(cluster_state_info.main, {"url": "https://127.0.0.1:9", "client_cert": "/x.pem"}, capsys)
    assert code == 1 and "client_cert" in result["msg"] and "client_key" in result["msg"]


def test_bad_url_is_a_clear_error(capsys):
    code, result = run_module(cluster_state_info.main, {"url": "ceptra:8443"}, capsys)
    assert code == 1
    assert result["msg"].startswith("Could not set up the connection to the CEPtra cluster: url 'ceptra:8443'")
