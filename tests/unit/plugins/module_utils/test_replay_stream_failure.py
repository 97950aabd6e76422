"""A replay slice whose append stream fails says so (issue 11): never a silent ``ok, done: false, retries: 0``.

The warning comes on the first failed request; ``failed_requests`` per partition counts them.
"""

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import MemoryCursorStore, MemorySource, make_event


class CutStreams(ControlPlane):
    """Every append stream ends before its first answer (what the lab did after a
    ``partition_flow.max_event_bytes: null`` PATCH broke its ingest)."""

    def _post_append_stream(self, call):
        self.requests.append((call.params["part_id"], []))
        return 200, []


class FailingAppends(ControlPlane):
    """Every append stream answers 500."""

    def _post_append_stream(self, call):
        self.requests.append((call.params["part_id"], []))
        return 500, {"error": "internal error"}


def _run(cluster, tmp_path, time_budget_s):
    source = MemorySource({"0": [make_event(0, i) for i in range(1, 21)]})
    run = rr.ReplayRun({"run_id": "short", "throttle": False, "cp_audit": False, "commit_interval_s": 0.0,
                        "audit_file": str(tmp_path / "audit.jsonl")}, cluster, source, MemoryCursorStore(),
                       lag_fetch=lambda: {})
    return run.run(time_budget_s=time_budget_s)


def test_a_slice_cut_short_by_failing_streams_warns_and_counts_failed_requests(tmp_path):
    result = _run(CutStreams(), tmp_path, time_budget_s=0.3)
    assert result["done"] is False and result["events_sent"] == 0
    part = result["partitions"]["0"]
    assert part["failed_requests"] > 0 and part["status"] != "done"
    warnings = [w for w in result["warnings"] if "append stream failed" in w]
    assert len(warnings) == 1, result["warnings"]     # once, on the first failure
    assert "partition 0" in warnings[0] and "answered 0 of" in warnings[0]


def test_failing_appends_warn_before_the_partition_stops(tmp_path):
    result = _run(FailingAppends(), tmp_path, time_budget_s=30)
    part = result["partitions"]["0"]
    assert part["status"] == "stopped" and part["report"]["reason"] == "TRANSPORT"
    assert part["failed_requests"] == 9      # the first try and 8 resends (sender.TRANSPORT_RETRY_LIMIT)
    assert any("append stream failed and is being resent" in w and "failed with 500" in w
               for w in result["warnings"]), result["warnings"]
