"""The one table of config bounds (_config_bounds): the lab enforces it, the OpenAPI document states it."""

import os

import pytest
import yaml

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_bounds as cb
from ansible_collections.ceptra.backfill.plugins.module_utils._config_rules import validate_leaves

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
DOCUMENT = os.path.join(REPO, "docs", "ceptra-api.openapi.yaml")


@pytest.fixture(scope="module")
def schemas():
    with open(DOCUMENT, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["components"]["schemas"]


def _integer_range(schemas, prop):
    """(minimum, maximum) of an integer property, following $ref and a nullable oneOf."""
    while True:
        if "$ref" in prop:
            prop = schemas[prop["$ref"].rsplit("/", 1)[1]]
        elif "oneOf" in prop:
            prop = next(p for p in prop["oneOf"] if p.get("type") != "null")
        else:
            return prop.get("minimum"), prop.get("maximum")


@pytest.mark.parametrize("schema_name", ["Config", "ConfigPatch"])
def test_openapi_states_the_same_bounds(schemas, schema_name):
    props = schemas[schema_name]["properties"]
    for key, bounds in cb.INT_BOUNDS.items():
        assert _integer_range(schemas, props[key]) == bounds, key
    for section, table in cb.NESTED_BOUNDS.items():
        for key, bounds in table.items():
            assert _integer_range(schemas, props[section]["properties"][key]) == bounds, "%s.%s" % (section, key)
    lane = props["lane_domains"]["additionalProperties"]["properties"]["max_per_partition"]
    assert _integer_range(schemas, lane) == cb.LANE_DOMAIN_BOUNDS
    assert set(props) == set(cb.KNOWN_TOP_LEVEL)


def test_openapi_per_metric_and_per_partition_knobs(schemas):
    for name, keys in (("MetricKnobs", cb.PER_METRIC_KEYS), ("PartitionKnobs", cb.PER_PARTITION_KEYS)):
        props = schemas[name]["properties"]
        assert tuple(props) == keys
        for key in cb.PER_METRIC_KEYS:
            assert _integer_range(schemas, props[key]) == cb.PER_METRIC_BOUNDS
    assert schemas["PartitionKnobs"]["properties"]["ingress_gate"]["enum"] == list(cb.INGRESS_GATES)


def test_the_lab_enforces_this_table():
    from ceptra_lab import config_history

    assert config_history.INT_BOUNDS == cb.INT_BOUNDS and config_history.FLOW_BOUNDS == cb.FLOW_BOUNDS
    assert config_history.READINESS_BOUNDS == cb.READINESS_BOUNDS
    assert config_history.LANE_DOMAIN_BOUNDS == cb.LANE_DOMAIN_BOUNDS
    assert config_history.KNOWN_TOP_LEVEL == set(cb.KNOWN_TOP_LEVEL)


EDGE_PATHS = (sorted(cb.INT_BOUNDS) + ["partition_flow.%s" % k for k in cb.FLOW_BOUNDS]
              + ["readiness.%s" % k for k in cb.READINESS_BOUNDS] + ["metrics.m.%s" % k for k in cb.PER_METRIC_KEYS]
              + ["partitions.0.%s" % k for k in cb.PER_METRIC_KEYS] + ["lane_domains.l.max_per_partition"])


@pytest.mark.parametrize("path", EDGE_PATHS)
def test_module_and_lab_agree_on_every_edge(path):
    """Each integer knob at both bounds and one past them: the module's check and the lab's agree."""
    from ceptra_lab.config_history import validate_shape

    low, high = cb.int_bounds(path)
    for value, allowed in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        module_ok = validate_leaves({path: value}, partition_ids=["0"]) == []
        config = node = {}
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        lab_ok = validate_shape(config, ["0"]) == []
        assert (module_ok, lab_ok) == (allowed, allowed), (path, value)
