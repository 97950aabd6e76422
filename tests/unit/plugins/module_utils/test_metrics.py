"""The Prometheus reader and THE alias table."""

from __future__ import annotations

import json
import math
import os

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _metrics
from ansible_collections.ceptra.backfill.plugins.module_utils._metrics import (
    METRIC_ALIASES, canonical_name, parse_prometheus, per_partition, read_metrics, read_series, resolve_name)

SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
CATALOG = os.path.join(SHARED, "reference/telemetry-catalog.json")

SPEC_TEXT = """\
# HELP apply_lag_ms commit->apply backlog age
# TYPE apply_lag_ms gauge
apply_lag_ms{part_id="0"} 12
apply_lag_ms{part_id="1"} 340.5
replication_lag_ms{part_id="0"} 45
ceptra_definition_warmup_pending{part_id="1"} 1
ceptra_ready_partitions_ratio 0.5
queue_depth{part_id="0",type="commit_apply"} 7
ap_late_events_total{part_id="0",metric="anti_cheat_flags",reason="FINALIZED"} 3
config_version_current 4
"""

REFERENCE_TEXT = """\
# TYPE ceptra_apply_lag_seconds gauge
ceptra_apply_lag_seconds{partition_id="0"} 0.012
clustor_replication_lag_seconds{partition_id="0"} 0.25
ceptra_partition_ready_ratio 0.75
compaction_duration_seconds_sum 1.5
compaction_duration_seconds_count 3
"""


def test_spec_exposition_is_read_per_partition():
    metrics = read_metrics(SPEC_TEXT)
    assert metrics["apply_lag_ms"] == {"0": 12.0, "1": 340.5}
    assert metrics["replication_lag_ms"] == {"0": 45.0}
    assert metrics["ceptra_definition_warmup_pending"] == {"1": 1.0}
    assert metrics["ceptra_ready_partitions_ratio"] == {"": 0.5}
    assert metrics["queue_depth"] == {"part_id=0,type=commit_apply": 7.0}
    assert metrics["ap_late_events_total"] == {"part_id=0,metric=anti_cheat_flags,reason=FINALIZED": 3.0}


def test_reference_variants_resolve_to_canonical_names_and_ms():
    metrics = read_metrics(REFERENCE_TEXT)
    assert metrics["apply_lag_ms"] == {"0": pytest.approx(12.0)}
    assert metrics["replication_lag_ms"] == {"0": pytest.approx(250.0)}
    assert metrics["ceptra_ready_partitions_ratio"] == {"": 0.75}
    assert metrics["compaction_duration_ms_sum"] == {"": pytest.approx(1500.0)}
    assert metrics["compaction_duration_ms_count"] == {"": 3.0}


def test_names_filter_accepts_any_spelling():
    assert set(read_metrics(SPEC_TEXT + REFERENCE_TEXT, ["apply_lag_seconds"])) == {"apply_lag_ms"}
    assert read_metrics(REFERENCE_TEXT, ["clustor_apply_lag_ms"]) == {"apply_lag_ms": {"0": pytest.approx(12.0)}}


def test_preferred_ms_spelling_wins_over_legacy_seconds():
    text = 'apply_lag_seconds{part_id="0"} 9\napply_lag_ms{part_id="0"} 12\n'
    assert read_metrics(text)["apply_lag_ms"] == {"0": 12.0}
    text = 'apply_lag_ms{part_id="0"} 12\napply_lag_seconds{part_id="0"} 9\n'
    assert read_metrics(text)["apply_lag_ms"] == {"0": 12.0}


def test_per_partition_filters_labels_and_sums():
    text = SPEC_TEXT + 'queue_depth{part_id="0",type="other"} 100\nap_late_events_total{part_id="0",metric="x",reason="FUTURE_SKEW"} 2\n'
    assert per_partition(text, "queue_depth", type="commit_apply") == {"0": 7.0}
    assert per_partition(text, "ceptra_ap_late_events_total") == {"0": 5.0}
    samples = read_series(REFERENCE_TEXT)
    assert per_partition(samples, "apply_lag_ms") == {"0": pytest.approx(12.0)}


def test_parser_handles_escapes_special_values_timestamps_and_junk():
    text = '\n'.join([
        'm{a="x\\"y",b="line\\nnext",c="back\\\\slash"} 1 1700000000000',
        'inf_metric +Inf', 'ninf_metric -Inf', 'nan_metric NaN',
        'this is not a sample', 'bad_value{a="1"} abc', 'bad_labels{a=1} 3', '',
        'spaced { part_id = "2" } 4',
    ])
    samples = {name: (labels, value) for name, labels, value in parse_prometheus(text)}
    assert samples["m"] == ({"a": 'x"y', "b": "line\nnext", "c": "back\\slash"}, 1.0)
    assert samples["inf_metric"][1] == math.inf and samples["ninf_metric"][1] == -math.inf
    assert math.isnan(samples["nan_metric"][1])
    assert "bad_value" not in samples and "bad_labels" not in samples and "this" not in samples
    assert samples["spaced"] == ({"part_id": "2"}, 4.0)


def test_unknown_metrics_pass_through_with_label_aliases():
    assert read_metrics('custom_thing{partition_id="3"} 2\n') == {"custom_thing": {"3": 2.0}}


def test_every_spelling_maps_to_exactly_one_canonical_name():
    seen = {}
    for canonical, spellings in METRIC_ALIASES.items():
        assert spellings[0] == canonical
        for spelling in spellings:
            assert spelling not in seen, "%s is listed for %s and %s" % (spelling, seen.get(spelling), canonical)
            seen[spelling] = canonical


def test_contract_variants_are_in_the_table():
    assert resolve_name("ceptra_apply_lag_ms") == ("apply_lag_ms", 1.0)
    assert resolve_name("clustor_replication_lag_ms") == ("replication_lag_ms", 1.0)
    assert resolve_name("replication_lag_seconds") == ("replication_lag_ms", 1000.0)
    assert canonical_name("ceptra_partition_ready_ratio") == "ceptra_ready_partitions_ratio"
    assert canonical_name("definition_warmup_pending") == "ceptra_definition_warmup_pending"
    assert canonical_name("finalized_horizon_stall") == "ceptra_finalized_horizon_stall"


def test_telemetry_catalog_spellings_are_all_known_and_seconds_aliases_convert():
    with open(CATALOG) as fh:
        catalog = json.load(fh)["metrics"]
    for entry in catalog:
        canonical, factor = resolve_name(entry["name"])
        assert canonical in METRIC_ALIASES, entry["name"]
        if entry.get("alias_for"):
            assert canonical == canonical_name(entry["alias_for"])
        assert factor == (1000.0 if entry["unit"] == "seconds" else 1.0), entry["name"]


def test_module_is_marked_internal():
    with open(_metrics.__file__) as fh:
        assert "Internal" in fh.read(400)
    assert os.path.basename(_metrics.__file__).startswith("_")
