"""_partitions: the one place that knows partition-id spellings, shapes and order."""

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions as parts
from ansible_collections.ceptra.backfill.plugins.module_utils._metrics import LABEL_ALIASES


def test_numeric_ids_first_in_value_order_then_the_rest_as_text():
    assert parts.sort_ids(["10", "2", 3, "b", "a", "2"]) == ["2", "3", "10", "a", "b"]


def test_both_shapes_and_every_spelling():
    assert parts.items({"3": {"x": 1}, 1: True}) == [("3", {"x": 1}), ("1", True)]
    listed = [{"part_id": 5}, {"partition_id": "7"}, {"id": 9}, {"partition": "p"}, {"other": 1}, True]
    assert [pid for pid, _entry in parts.items(listed)] == ["5", "7", "9", "p", "4", "5"]
    assert parts.items(None) == [] and parts.items("3") == []
    assert [pid for pid, _entry in parts.sorted_items({"10": {}, "9": {}})] == ["9", "10"]
    assert parts.entry_id({"partition_id": 0, "id": 4}) == "0" and parts.entry_id({}, 2) == "2"


def test_metric_labels_follow_the_same_spellings():
    assert LABEL_ALIASES == {"partition_id": "part_id", "partition": "part_id"}
