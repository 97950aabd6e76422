"""cluster_state_info against a scripted server."""

from __future__ import annotations

import json

from ansible_collections.ceptra.backfill.plugins.modules import cluster_state_info

from ..test_support.http_server import Reply

STATE = {
    "cluster": {"epoch": 3, "partitions": 2, "test_mode": True},
    "partitions": [
        {"part_id": "1", "leader": "ceptra-1", "commit_index": 9, "applied_index": 9,
         "unavailable_windows": [{"start_ts_ns": 10, "end_ts_ns": 20}]},
        {"part_id": "0", "leader": "ceptra-0", "commit_index": 5, "applied_index": 4},
    ],
}


def test_returns_cluster_and_sorted_partitions(server, run_module):
    server.on("GET", "/v1/state", Reply(200, STATE))
    failed, result = run_module(cluster_state_info, {"url": server.url, "token": "t"})
    assert not failed and result["changed"] is False
    assert result["cluster"] == STATE["cluster"]
    assert result["partition_ids"] == ["0", "1"]
    assert result["unavailable_windows"] == {"0": [], "1": [{"start_ts_ns": 10, "end_ts_ns": 20}]}


def test_partition_filter_and_unknown_partition(server, run_module):
    server.on("GET", "/v1/state", Reply(200, STATE))
    failed, result = run_module(cluster_state_info, {"url": server.url, "partitions": ["1"]})
    assert [p["part_id"] for p in result["partitions"]] == ["1"]
    failed, result = run_module(cluster_state_info, {"url": server.url, "partitions": ["7"]})
    assert failed and result["failed"]
    assert result["msg"] == "Unknown partition id(s) 7; the cluster has partitions 0, 1"


def test_tolerates_partitions_keyed_by_id_with_partition_id(server, run_module):
    server.on("GET", "/v1/state", Reply(200, {"partitions": {"0": {"leader": "a"}, "1": {"partition_id": 1}}}))
    failed, result = run_module(cluster_state_info, {"url": server.url})
    assert not failed and result["partition_ids"] == ["0", "1"] and result["cluster"] == {}


def test_error_is_readable_and_secret_free(server, run_module):
    server.on("GET", "/v1/state", Reply(401, {"error": "unknown bearer token", "status": 401}))
    failed, result = run_module(cluster_state_info, {"url": server.url, "token": "hush-hush"})
    assert failed
    assert result["msg"].startswith("Could not read the cluster state: GET /v1/state failed with 401: unknown bearer token")
    assert result["status"] == 401
    assert "hush-hush" not in json.dumps(result)


def test_connection_options_from_environment(server, run_module, monkeypatch):
    server.on("GET", "/gw/state", Reply(200, STATE))
    monkeypatch.setenv("CEPTRA_URL", server.url)
    monkeypatch.setenv("CEPTRA_TOKEN", "env-token")
    monkeypatch.setenv("CEPTRA_ROUTES", '{"state": "/gw/state"}')
    failed, result = run_module(cluster_state_info, {})
    assert not failed and result["partition_ids"] == ["0", "1"]
    assert server.calls()[0].headers["Authorization"] == "Bearer env-token"


def test_client_cert_without_key_is_refused(run_module):
    failed, result = run_module(cluster_state_info, {"url": "https://127.0.0.1:9", "client_cert": "/x.pem"})
    assert failed and "client_cert" in result["msg"] and "client_key" in result["msg"]


def test_bad_url_is_a_clear_error(run_module):
    failed, result = run_module(cluster_state_info, {"url": "ceptra:8443"})
    assert failed
    assert result["msg"].startswith("Could not set up the connection to the CEPtra cluster: url 'ceptra:8443'")
