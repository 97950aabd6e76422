"""metrics_info against a scripted /metrics."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.modules import metrics_info

from ..test_support.http_server import FakeServer, Reply

TEXT = """\
# TYPE ceptra_apply_lag_seconds gauge
ceptra_apply_lag_seconds{partition_id="0"} 0.012
ceptra_apply_lag_seconds{partition_id="1"} 0.34
replication_lag_ms{part_id="0"} 45
replication_lag_ms{part_id="1"} 2
queue_depth{part_id="1",type="commit_apply"} 7
ceptra_partition_ready_ratio 0.5
something_else{part_id="0"} 1
"""


@pytest.fixture
def server():
    srv = FakeServer()
    srv.on("GET", "/metrics", Reply(200, raw=TEXT, headers={"Content-Type": "text/plain; version=0.0.4"}))
    yield srv
    srv.close()


def test_default_selection_resolves_aliases(server, run_module):
    failed, result = run_module(metrics_info, {"url": server.url})
    assert not failed and result["changed"] is False
    assert result["partitions"]["0"]["apply_lag_ms"] == pytest.approx(12.0)
    assert result["partitions"]["1"]["apply_lag_ms"] == pytest.approx(340.0)
    assert result["partitions"]["1"]["queue_depth"] == {"type=commit_apply": 7.0}
    assert result["cluster"] == {"ceptra_ready_partitions_ratio": 0.5}
    assert "something_else" not in result["metrics"]
    assert "ceptra_finalized_horizon_stall" in result["missing"]
    assert server.calls()[0].headers["Accept"] == "text/plain"


def test_names_and_partitions_filter(server, run_module):
    failed, result = run_module(metrics_info, {"url": server.url, "names": ["clustor_apply_lag_ms", "nope_total"],
                                               "partitions": ["1"]})
    assert result["partitions"] == {"1": {"apply_lag_ms": pytest.approx(340.0)}}
    assert result["metrics"] == {"apply_lag_ms": {"1": pytest.approx(340.0)}}
    assert result["missing"] == ["nope_total"]


def test_star_returns_everything(server, run_module):
    failed, result = run_module(metrics_info, {"url": server.url, "names": ["*"]})
    assert result["partitions"]["0"]["something_else"] == 1.0 and result["missing"] == []


def test_error_mapping(server, run_module):
    server.on("GET", "/metrics", Reply(404, {"error": "no route GET /metrics", "status": 404}))
    failed, result = run_module(metrics_info, {"url": server.url})
    assert failed and "Could not read the cluster metrics (/metrics)" in result["msg"]
    assert "routes option" in result["msg"]


def test_an_unknown_partition_fails_naming_the_partitions_that_exist(server, run_module):
    failed, result = run_module(metrics_info, {"url": server.url, "partitions": ["1", "7"]})
    assert failed and "Traceback" not in str(result)
    assert result["msg"] == ("partition(s) 7 do not exist: /metrics reports partitions 0, 1; fix the partition ids")
    assert result["unknown_partitions"] == ["7"]
