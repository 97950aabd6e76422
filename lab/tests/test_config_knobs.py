"""KnobView: knob precedence, defaults, sections, ingress gate."""
from __future__ import annotations

import pytest

from ceptra_lab.config_knobs import DEFAULT_CONFIG, KnobView


def test_defaults_match_the_contract_knob_layout():
    view = KnobView()
    assert view.get("lateness_allowance_ms") == 2000 and view.get("correction_horizon_ms") == 3600000
    assert view.section("partition_flow") == {"max_events": 2048, "max_bytes": 16777216, "max_event_bytes": 1048576}
    assert set(DEFAULT_CONFIG) >= {"metrics", "partitions", "lane_domains", "annotations", "readiness"}


def test_knob_precedence_metric_then_partition_then_top_level():
    view = KnobView({"lateness_allowance_ms": 10,
                       "metrics": {"m": {"lateness_allowance_ms": 30}},
                       "partitions": {"1": {"lateness_allowance_ms": 20, "ingress_gate": "warmup"}}})
    assert view.knob("1", "m", "lateness_allowance_ms") == 30
    assert view.knob("1", "x", "lateness_allowance_ms") == 20
    assert view.knob("2", "x", "lateness_allowance_ms") == 10
    assert view.knob("2", None, "watermark_guard_ms") == 200          # contract default
    assert view.ingress_gate("1") == "warmup" and view.ingress_gate("2") is None
    assert view.section("readiness")["apply_lag_ms"] == 200


def test_update_bumps_generation_and_version():
    view = KnobView()
    view.update({"pane_size_ms": 500})
    view.update({"pane_size_ms": 1000}, version=9)
    assert (view.generation, view.version, view.get("pane_size_ms")) == (2, 9, 1000)
    with pytest.raises(TypeError, match="JSON object"):
        view.update(["not", "a", "dict"])
