# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fan-out: disjoint, covering, balanced, deterministic partition shares."""

from __future__ import annotations

import random

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay.fanout import (
    FanoutError, assign_partitions, assignment_table, check_worker_group, slice_partitions)

from ..test_support.replay_fakes import MemoryCursorStore


@pytest.mark.parametrize("n_parts, n_hosts", [(8, 2), (8, 3), (16, 5), (3, 4), (1, 1), (64, 7)])
def test_shares_are_disjoint_covering_and_balanced(n_parts, n_hosts):
    parts = [str(p) for p in range(n_parts)]
    hosts = ["worker-%d.example" % h for h in range(n_hosts)]
    shares = {h: assign_partitions(parts, hosts, h) for h in hosts}
    every = [p for share in shares.values() for p in share]
    assert sorted(every, key=int) == parts            # covering, and no partition twice
    assert len(every) == len(set(every))              # disjoint
    sizes = [len(s) for s in shares.values()]
    assert max(sizes) - min(sizes) <= 1               # balanced


def test_assignment_ignores_input_order_and_duplicates():
    parts = [str(p) for p in range(12)]
    hosts = ["c", "a", "b"]
    expected = {h: assign_partitions(parts, hosts, h) for h in hosts}
    rng = random.Random(3)
    for _round in range(20):
        p2, h2 = parts[:] + ["3", "7"], hosts[:] + ["a"]
        rng.shuffle(p2)
        rng.shuffle(h2)
        assert {h: assign_partitions(p2, h2, h) for h in hosts} == expected
    # Natural numeric order: round robin over 0, 1, 2, .. 11 on hosts a, b, c.
    assert expected == {"a": ["0", "3", "6", "9"], "b": ["1", "4", "7", "10"], "c": ["2", "5", "8", "11"]}


def test_integer_and_non_numeric_partition_ids():
    table = assignment_table([10, 2, "1", "x"], ["h1", "h2"])
    assert table == {"h1": ["1", "10"], "h2": ["2", "x"]}


def test_host_outside_the_group_is_a_clear_error():
    with pytest.raises(FanoutError, match="'h9' is not in the worker group"):
        assign_partitions(["0", "1"], ["h1", "h2"], "h9")
    with pytest.raises(FanoutError, match="non-empty list"):
        assign_partitions(["0"], [], "h1")
    with pytest.raises(FanoutError, match="non-empty list"):
        assign_partitions(["0"], "h1", "h1")
    with pytest.raises(FanoutError, match="part_ids must be a list"):
        assign_partitions("01", ["h1"], "h1")


def test_slices_cover_all_partitions_once():
    parts = [str(p) for p in range(10)]
    slices = [slice_partitions(parts, i, 3) for i in range(3)]
    assert slices[0] == ["0", "3", "6", "9"]
    assert sorted((p for s in slices for p in s), key=int) == parts
    # Same rule as the host assignment when hosts are named in slice order.
    assert slices == [assign_partitions(parts, ["s0", "s1", "s2"], "s%d" % i) for i in range(3)]
    for bad in ((3, 3), (-1, 3), (0, 0), ("1", 3), (True, 3)):
        with pytest.raises(FanoutError):
            slice_partitions(parts, *bad)


def test_check_worker_group_records_the_first_list_and_refuses_another():
    store = MemoryCursorStore()
    assert check_worker_group(store, "r", ["w2", "w1", "w1"]) == ["w1", "w2"]
    assert check_worker_group(store, "r", ["w1", "w2"]) == ["w1", "w2"]      # same set, any order
    with pytest.raises(FanoutError) as err:
        check_worker_group(store, "r", ["w2"])
    assert "worker group ['w1', 'w2']" in str(err.value) and "passes ['w2']" in str(err.value)
    assert "AWX sliced job" in str(err.value)
    assert store.groups["r"] == ["w1", "w2"]


def test_check_worker_group_compare_only_and_replace():
    store = MemoryCursorStore()
    assert check_worker_group(store, "r", ["w1"], register=False) == ["w1"]
    assert "r" not in store.groups                                           # check mode writes nothing
    check_worker_group(store, "r", ["w1", "w2"])
    with pytest.raises(FanoutError):
        check_worker_group(store, "r", ["w1"], register=False)
    assert check_worker_group(store, "r", ["w3"], register=False, replace=True) == ["w3"]
    assert store.groups["r"] == ["w1", "w2"]                                 # check mode of a reassignment
    assert check_worker_group(store, "r", ["w1"], replace=True) == ["w1"]
    assert store.groups["r"] == ["w1"]
