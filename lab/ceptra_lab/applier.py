"""What a partition's applied log entries have built, and the one loop that applies them.

An ``Applier`` holds the aggregate state of the active bundle and of the shadow bundle being
warmed, the per-key last-applied map, the config version in force and the definitions in
force, all as of its ``index`` (the last applied entry). Everything in it is a function of the
WAL entries and of the partition's marks (config changes, shadow starts, activation barriers:
``Mark``), each taking effect at a log position, never of the clock or of the config when it
runs. The live partition, a restart (``Partition.restore``), a WAL replay job from a
checkpoint and a wipe's baseline all run the same ``advance`` over their own copy, so they
compute the same state from the same log (spec §13.3, §13.6, §20.6 Invariant C3).
"""
from __future__ import annotations

from typing import NamedTuple

from .aggregates import AggregateStore


class Mark(NamedTuple):
    """A control entry of a partition's log: takes effect after entry ``after_index``.

    ``kind``: ``config`` (``value`` a frozen KnobView), ``shadow`` (start warming bundle
    ``value``), ``activate`` (``value`` becomes the active bundle: DEFINE_ACTIVATE).
    """

    seq: int
    after_index: int
    kind: str
    value: object


class Applier:
    """Applied state of one partition (see the module docstring)."""

    def __init__(self, part_id: str, knobs, bundle=None):
        self.part_id = part_id
        self.knobs = knobs
        self.bundle = bundle
        self.store = AggregateStore(knobs, part_id)
        self.store.set_bundle(bundle)
        self.shadow_bundle = None
        self.shadow: AggregateStore | None = None
        self.key_last: dict[str, int] = {}
        self.index = 0             # last applied entry
        self.marks_done = 0        # marks (of the partition's list) already in effect here
        self.pinned_shadow = None  # a WAL replay job's shadow: older shadow starts do not replace it
        self.rules = getattr(bundle, "ruleset", None)   # the active bundle's rules (rules.RuleSet)
        self.emit = None           # callable(derived_event) for what rules emit (None: discard)

    def copy(self) -> "Applier":
        """An independent copy (checkpoints, replay jobs); aggregate panes are copy-on-write."""
        other = Applier.__new__(Applier)
        other.__dict__.update(self.__dict__)
        other.store = self.store.copy()
        other.shadow = self.shadow.copy() if self.shadow is not None else None
        other.key_last = dict(self.key_last)
        return other

    # -- marks -------------------------------------------------------------------------------
    def apply_mark(self, mark: Mark) -> None:
        """Put one control entry into effect."""
        if mark.kind == "config":
            self.knobs = mark.value
            self.store.set_knobs(mark.value)
            if self.shadow is not None:
                self.shadow.set_knobs(mark.value)
        elif mark.kind == "shadow":
            pinned = self.pinned_shadow
            if mark.value is not self.shadow_bundle and (pinned is None or pinned is mark.value):
                self.shadow_bundle = mark.value
                self.shadow = self.store.upgraded_copy(mark.value) if mark.value is not None else None
        elif mark.kind == "activate":
            bundle = mark.value
            if bundle is self.shadow_bundle and self.shadow is not None:
                self.store = self.shadow
                self.shadow_bundle = self.shadow = self.pinned_shadow = None
            elif bundle is not self.bundle:
                self.store = self.store.upgraded_copy(bundle)    # a newer shadow, if any, goes on warming
            self.bundle = bundle
            self.rules = getattr(bundle, "ruleset", None)
        self.marks_done += 1

    # -- entries --------------------------------------------------------------------------------
    def advance(self, wal: list, first_index: int, end_index: int, marks: list) -> tuple[int, int, int]:
        """Apply WAL entries up to ``end_index`` (inclusive), putting marks into effect at their
        positions (also those right after the last entry). ``wal[0]`` has index ``first_index``.
        Returns (applied, skipped, bytes)."""
        applied = skipped = done_bytes = 0
        while True:
            while self.marks_done < len(marks) and marks[self.marks_done].after_index <= self.index:
                self.apply_mark(marks[self.marks_done])
            if self.index >= end_index:
                return applied, skipped, done_bytes
            stop = end_index
            if self.marks_done < len(marks):
                stop = min(stop, marks[self.marks_done].after_index)
            start = self.index + 1 - first_index
            a, s, b = apply_entries(wal, start, stop + 1 - first_index, self)
            applied, skipped, done_bytes = applied + a, skipped + s, done_bytes + b
            self.index = stop


def apply_entries(wal: list, start: int, end: int, applier: Applier) -> tuple[int, int, int]:
    """Apply wal[start:end] (positions) to ``applier``; returns (applied, skipped, bytes). The hot loop."""
    store, key_last, shadow, rules = applier.store, applier.key_last, applier.shadow, applier.rules
    apply = store.apply
    store.refresh_knobs()
    shadow_apply = shadow.apply if shadow is not None else None
    applied = skipped = done_bytes = 0
    for position in range(start, end):
        entry = wal[position]
        index, _term, commit, _msg, size, ts, key, name, labels, value = entry
        done_bytes += size
        if key_last.get(key, 0) >= index:      # per-key last-event-wins
            skipped += 1
            continue
        key_last[key] = index
        apply(ts, name, labels, value, commit)
        if shadow_apply is not None:
            shadow_apply(ts, name, labels, value, commit)
        if rules is not None:
            rules.evaluate(entry, store, applier)
        applied += 1
    return applied, skipped, done_bytes
