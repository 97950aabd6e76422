# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: partition ids, their spellings, shapes and order.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the only place that knows partition ids.

The cluster's documents list partitions in two shapes: an object keyed by id
(``{"3": {...}}``) or a list of entries naming their id (``[{"part_id": "3", ...}]``), and
an entry names its id under one of :data:`ID_KEYS` (the contract's ``part_id``, the
reference implementation's ``partition_id``, ``id`` or ``partition``); metric series carry
it in one of the labels :data:`LABEL_KEYS`. Ids are strings, ordered numerically first
("2" before "10"), then the rest as text.
"""

from __future__ import annotations

# Spellings of a partition's id in an entry, preferred first.
ID_KEYS = ("part_id", "partition_id", "id", "partition")
# Spellings of the metric label that carries a partition's id (``_metrics`` reads them as part_id).
LABEL_KEYS = ("part_id", "partition_id", "partition")


def sort_key(part_id):
    """Order of partition ids: numeric ones by value ("2" before "10"), then the rest as text."""
    text = str(part_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def sort_ids(part_ids):
    """The distinct ids of ``part_ids`` as strings, in partition order."""
    return sorted({str(p) for p in part_ids}, key=sort_key)


def entry_id(entry, fallback=None):
    """The id an entry names (the first of :data:`ID_KEYS` it has), else ``fallback``."""
    if isinstance(entry, dict):
        for key in ID_KEYS:
            if entry.get(key) is not None:
                return str(entry[key])
    return None if fallback is None else str(fallback)


def items(partitions):
    """``[(part_id, entry), ...]`` from an id-keyed object or a list of entries, in the
    document's order. A list entry that names no id (or is not an object) takes its
    position in the list as its id; anything but an object or a list gives no items."""
    if isinstance(partitions, dict):
        return [(str(part_id), entry) for part_id, entry in partitions.items()]
    if isinstance(partitions, list):
        return [(entry_id(entry, index), entry) for index, entry in enumerate(partitions)]
    return []


def sorted_items(partitions):
    """:func:`items` in partition order."""
    return sorted(items(partitions), key=lambda item: sort_key(item[0]))


def unknown_ids(requested, known):
    """The ids of ``requested`` that are not among ``known``, in the order requested."""
    known = {str(p) for p in known}
    return [str(p) for p in requested if str(p) not in known]


def describe_unknown(unknown, known, source):
    """The message for partitions that do not exist, naming those that do: e.g. ``partition(s) 9
    do not exist: /readyz reports partitions 0, 1, 2, 3; fix the partition ids``."""
    return ("partition(s) %s do not exist: %s reports partitions %s; fix the partition ids"
            % (", ".join(unknown), source, ", ".join(sort_ids(known)) or "(none)"))
