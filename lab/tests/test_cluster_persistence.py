"""--state-dir keeps WAL, config versions, audit log and bundles across a restart; SIGTERM stops cleanly."""
from __future__ import annotations

import json

from ceptra_lab.testing import LabProcess, append_stream, sample_event, wait_for

GAMING = "/work/shared/reference/bundles/gaming_cheat_detection.yaml"


def test_restart_keeps_wal_config_audit_and_bundles(tmp_path):
    state_dir = str(tmp_path / "state")
    with LabProcess(partitions=2, state_dir=state_dir, extra_args=["--shadow-warmup-ms", "50"]) as lab:
        with open(GAMING, "rb") as handle:
            _, _, uploaded = lab.request("POST", "/v1/definitions", data=handle.read(), role="operator",
                                         headers={"Content-Type": "application/yaml"})
        barrier = lab.request("POST", "/v1/activate", {"bundle_id": uploaded["bundle_id"]}, role="operator")[2]
        wait_for(lambda: lab.request("GET", f"/v1/activate/{barrier['barrier_id']}", role="observer")[2]["state"]
                 == "committed", message="commit")
        events = [sample_event(f"p-{i}", part_id="1", metric="anti_cheat_flags_total",
                               labels={"queue": "ranked", "player_id": f"p{i % 3}"}, value=float(i)) for i in range(30)]
        events += [sample_event(f"r-{i}", part_id="1", flags=["REPLAY"], replay_session="run/1", replay_seq=i + 1)
                   for i in range(5)]
        append_stream(lab, "1", events)
        lab.request("PATCH", "/v1/config", {"lateness_allowance_ms": 9000}, role="operator")
        lab.request("POST", "/v1/test/outage", {"part_ids": ["0"], "duration_ms": 10})
        before_state = lab.request("GET", "/v1/state", role="observer")[2]
        before_snapshot = lab.request("GET", "/v1/test/metrics-snapshot?part_id=1", role="observer")[2]
        before_config = lab.request("GET", "/v1/config", role="observer")[2]
        before_audit = lab.request("GET", "/v1/audit", role="observer")[2]["records"]
        assert lab.stop() == 0
    assert "ceptra-lab stopped" in lab.output

    with LabProcess(partitions=2, state_dir=state_dir) as again:
        config = again.request("GET", "/v1/config", role="observer")[2]
        assert config == before_config and config["config"]["lateness_allowance_ms"] == 9000
        audit = again.request("GET", "/v1/audit", role="observer")[2]["records"]
        assert audit[:len(before_audit)] == before_audit
        state = again.request("GET", "/v1/state", role="observer")[2]
        part = state["partitions"][1]
        assert part["commit_index"] == before_state["partitions"][1]["commit_index"] == 35
        assert part["applied_index"] == 35
        assert part["replay_sessions"] == {"run/1": {"last_seq": 5}}
        assert state["partitions"][0]["unavailable_windows"] == before_state["partitions"][0]["unavailable_windows"]
        assert state["cluster"]["epoch"] == before_state["cluster"]["epoch"] + 1
        definitions = again.request("GET", "/v1/definitions", role="observer")[2]
        assert definitions["active"]["bundle_id"] == uploaded["bundle_id"]
        snapshot = again.request("GET", "/v1/test/metrics-snapshot?part_id=1", role="observer")[2]
        assert snapshot["digest"] == before_snapshot["digest"]
        # the restored dedup table still knows the old event ids
        assert append_stream(again, "1", [events[0]])[0]["duplicate"] is True
        # and the WAL keeps growing from where it was
        assert append_stream(again, "1", [sample_event("new-after-restart", part_id="1")])[0]["index"] == 36
    with open(f"{state_dir}/config.json", encoding="utf-8") as handle:
        assert len(json.load(handle)["versions"]) == before_config["version"]


def test_sigterm_stops_cleanly(lab_factory):
    lab = lab_factory(partitions=1)
    append_stream(lab, "0", [sample_event("bye", part_id="0")])
    assert lab.stop() == 0
    assert lab.output[-1] == "ceptra-lab stopped"
    assert not any("Traceback" in line for line in lab.output)
