# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the recovery roles use to shape their plan (logic in module_utils/_recovery.py)."""

from __future__ import annotations

import time

from ansible.errors import AnsibleFilterError

from ansible_collections.ceptra.backfill.plugins.module_utils._recovery import lateness_override as _lateness_override


def lateness_override(metrics, window_start_ns, now_ns=None, min_lateness_ms=3600000, min_correction_ms=7200000,
                      margin_ms=3600000):
    """The config_override settings widening L and C for ``metrics`` only (see _recovery.lateness_override)."""
    if metrics is None:
        metrics = []
    if isinstance(metrics, (str, bytes)) or not hasattr(metrics, "__iter__"):
        raise AnsibleFilterError("lateness_override: the input must be a list of metric names, got %r" % (metrics,))
    try:
        return _lateness_override(list(metrics), None if window_start_ns is None else int(window_start_ns),
                                  time.time_ns() if now_ns is None else int(now_ns), int(min_lateness_ms),
                                  int(min_correction_ms), int(margin_ms))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("lateness_override: %s" % exc)


def pluck(mapping, key):
    """``{name: entry[key]}`` for every entry of a mapping of mappings (missing keys give None)."""
    if not isinstance(mapping, dict):
        raise AnsibleFilterError("pluck: the input must be a mapping, got %s" % type(mapping).__name__)
    return {name: (entry.get(key) if isinstance(entry, dict) else None) for name, entry in mapping.items()}


def without_empty_ledgers(config):
    """The config without empty entries under ``annotations`` (a ledger the config manager
    emptied by reverting its last override is not a difference from the baseline)."""
    if not isinstance(config, dict):
        raise AnsibleFilterError("without_empty_ledgers: the input must be a config mapping")
    annotations = config.get("annotations")
    if not isinstance(annotations, dict):
        return dict(config)
    return dict(config, annotations={k: v for k, v in annotations.items() if v not in ({}, [], None)})


class FilterModule(object):
    """ceptra.backfill filters."""

    def filters(self):
        return {"lateness_override": lateness_override, "pluck": pluck, "without_empty_ledgers": without_empty_ledgers}
