# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ingress gates: close, open when readiness allows, hold file, wait and its failure."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._ingress_gate import GateKeeper, IngressGateError

from ..test_support.control_plane import ControlPlane


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def keeper(plane, **options):
    clock = Clock()
    return GateKeeper(plane, clock=clock, sleep=clock.sleep, monotonic=clock, **options), clock


def test_open_opens_only_partitions_whose_readiness_allows_it():
    plane = ControlPlane()
    plane.wiped = {"1", "3"}
    plane.reasons = {"3": ["apply_lag"]}
    gates, _clock = keeper(plane, run_id="r1")
    result = gates.open(["1", "3"])
    assert [o["part_id"] for o in result["opened"]] == ["1"] and result["changed"]
    assert result["closed"] == ["3"] and result["blocked"] == {"3": ["apply_lag"]}
    assert plane.config["partitions"] == {"1": {"ingress_gate": "open"}}
    assert plane.patches[0].headers["If-Match"] == '"1"'
    assert [r["details"]["part_ids"] for r in plane.audit if r["kind"] == "ingress_gate"] == [["1"]]
    again = gates.open(["1"])
    assert not again["changed"] and len(plane.patches) == 1


def test_hold_file_keeps_gates_closed(tmp_path):
    plane = ControlPlane()
    plane.wiped = {"2"}
    hold = tmp_path / "hold"
    gates, _clock = keeper(plane)
    assert gates.open(["2"], hold_file=str(hold), create_hold=True)["held"] and not plane.patches
    assert hold.exists() and gates.open(["2"], hold_file=str(hold))["held"]
    hold.unlink()
    assert gates.open(["2"], hold_file=str(hold))["open"] == ["2"]


def test_wait_opens_as_readiness_clears_and_fails_naming_the_gate_and_partition():
    plane = ControlPlane()
    plane.wiped = {"1", "2"}
    plane.reasons = {"1": ["apply_lag"], "2": ["replication_lag"]}
    gates, clock = keeper(plane)
    original = clock.sleep

    def clears(seconds):
        original(seconds)
        if clock.now >= 3:
            plane.reasons["1"] = []
    gates.sleep = clears
    with pytest.raises(IngressGateError, match=r"Gate: ingress open: partition\(s\) 2 still in warmup after 10s "
                                               r"\(partition 2: replication_lag\)") as err:
        gates.open(["1", "2"], timeout=10, interval=1)
    assert [o["part_id"] for o in err.value.details["opened"]] == ["1"]
    assert plane.gate("1") == "open" and plane.gate("2") == "warmup"


def test_check_mode_reports_what_would_open_and_sends_nothing():
    plane = ControlPlane()
    plane.wiped = {"0"}
    gates, _clock = keeper(plane, check_mode=True)
    assert gates.open(["0"], timeout=5)["changed"]
    assert not plane.writes()


def test_close_holds_partitions_in_warmup_once():
    plane = ControlPlane()
    gates, _clock = keeper(plane)
    assert gates.close(["0", "2"])["closed"] == ["0", "2"]
    assert plane.gate("0") == "warmup" and not gates.close(["0"])["changed"]
    with pytest.raises(IngressGateError, match="unknown partition"):
        gates.close(["7"])
