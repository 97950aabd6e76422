# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: replay progress as compact figures and as lines for a person.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): replay progress for people and records.

:func:`compact_progress` keeps only the figures of a ``historic_replay`` (or
``historic_replay_info``) result that a person follows (events done / total, rate, ETA,
apply and replication lag, state per partition): numbers and state words, never event
content or error messages, so the audit callback can record them. :func:`progress_lines`
turns them into one line per partition (the callback prints them on each retry of the
replay loop); the report draws them over time.
"""

from __future__ import annotations

PARTITION_FIELDS = ("status", "events_done", "events_total", "rate_eps", "eta_s", "apply_lag_ms",
                    "replication_lag_ms")
TOTAL_FIELDS = ("done", "events_done", "events_total", "events_sent", "rate_eps", "eta_s")


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _part_key(part_id):
    text = str(part_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def compact_progress(result):
    """The progress figures of a replay result, or None when ``result`` is not one.

    Returns {run_id, done, events_done, events_total, events_sent, rate_eps, eta_s,
    partitions: {part_id: {status, events_done, events_total, rate_eps, eta_s,
    apply_lag_ms, replication_lag_ms}}}.
    """
    if not isinstance(result, dict):
        return None
    parts = result.get("partitions")
    if not isinstance(parts, dict) or not parts:
        return None
    out_parts = {}
    for part_id, part in parts.items():
        if not isinstance(part, dict) or "events_done" not in part:
            return None
        entry = {}
        for key in PARTITION_FIELDS:
            value = part.get(key)
            entry[key] = str(value) if key == "status" and value is not None else _number(value)
        out_parts[str(part_id)] = entry
    out = {"run_id": str(result["run_id"]) if result.get("run_id") is not None else None}
    for key in TOTAL_FIELDS:
        value = result.get(key)
        out[key] = bool(value) if key == "done" else _number(value)
    out["partitions"] = dict(sorted(out_parts.items(), key=lambda kv: _part_key(kv[0])))
    return out


def _fmt_duration(seconds):
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    if seconds >= 60:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _fmt_rate(rate):
    return "%.0f ev/s" % rate if rate is not None else "- ev/s"


def _fmt_lag(lag):
    return "%.0f ms" % lag if lag is not None else "-"


def _pct(done, total):
    if not total:
        return 100.0 if done is not None else 0.0
    return 100.0 * (done or 0) / total


def progress_lines(progress, host=None, attempt=None):
    """Lines for a person: one summary line, then one line per partition.

    ``  replay r1 p3: 10443/20000 (52.2%) 5392 ev/s ETA 2s apply lag 171 ms repl lag 12 ms running``
    """
    if not progress:
        return []
    where = "[%s] " % host if host else ""
    round_text = " round %d" % attempt if attempt else ""
    run = progress.get("run_id") or "-"
    lines = ["%sreplay %s%s: %s/%s (%.1f%%) %s ETA %s" % (
        where, run, round_text, progress.get("events_done") or 0, progress.get("events_total") or 0,
        _pct(progress.get("events_done"), progress.get("events_total")), _fmt_rate(progress.get("rate_eps")),
        _fmt_duration(progress.get("eta_s")))]
    for part_id, part in progress.get("partitions", {}).items():
        total = part.get("events_total")
        lines.append("%s  replay %s p%s: %s/%s (%.1f%%) %s ETA %s apply lag %s repl lag %s %s" % (
            where, run, part_id, part.get("events_done") or 0, total if total is not None else "?",
            _pct(part.get("events_done"), total), _fmt_rate(part.get("rate_eps")), _fmt_duration(part.get("eta_s")),
            _fmt_lag(part.get("apply_lag_ms")), _fmt_lag(part.get("replication_lag_ms")), part.get("status") or "-"))
    return lines
