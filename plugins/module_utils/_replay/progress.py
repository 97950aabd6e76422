# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): replay progress and metrics.

- ``ProgressTracker``: per-partition events done/total, position, EWMA rate, ETA, lag;
  ``format_progress_line`` is the command line's line per second.
- ``render_metrics`` / ``write_metrics_textfile`` / ``push_metrics``: Prometheus text
  (node_exporter textfile collector, atomic rename; optional Pushgateway PUT).

The audit trail of a run is in ``audit``.
"""

from __future__ import annotations

import os
import threading
import time

from ansible.module_utils.urls import open_url

from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids

EWMA_ALPHA = 0.3


class PartitionProgress(object):
    """Progress of one partition (mutated under the tracker's lock)."""

    def __init__(self, part_id, total, done=0, bytes_done=0, position=None, status="pending",
                 target_ts_ns=None):
        self.part_id = str(part_id)
        self.total = total
        self.done = done
        self.bytes_done = bytes_done
        self.position = position
        self.status = status
        self.target_ts_ns = target_ts_ns
        self.last_ts_ns = None
        self.rate = None             # events/s, EWMA
        self._rate_mark = None       # (time, done) at the last rate update
        self.apply_lag_ms = None
        self.replication_lag_ms = None
        self.target_rate = None
        self.retries = 0
        self.duplicates = 0
        self.sent_this_run = 0
        self.dead_lettered = 0
        self.duplicates_skipped = 0   # later copies of an event in the history, not sent
        self.retry_expired = 0        # events passed after a PERMANENT_RETRY_EXPIRED refusal (never resent)
        self.report = None

    def as_dict(self):
        remaining = max(0, (self.total or 0) - self.done) if self.total is not None else None
        eta = None
        if remaining == 0:
            eta = 0.0
        elif remaining and self.rate:
            eta = round(remaining / self.rate, 1)
        hist_lag = None
        if self.target_ts_ns is not None and self.last_ts_ns is not None:
            hist_lag = max(0.0, (self.target_ts_ns - self.last_ts_ns) / 1e9)
        return {
            "part_id": self.part_id, "status": self.status,
            "events_done": self.done, "events_total": self.total, "bytes_done": self.bytes_done,
            "position": list(self.position) if self.position is not None else None,
            "rate_eps": round(self.rate, 1) if self.rate is not None else None,
            "target_rate_eps": round(self.target_rate, 1) if self.target_rate is not None else None,
            "eta_s": eta, "apply_lag_ms": self.apply_lag_ms, "replication_lag_ms": self.replication_lag_ms,
            "historic_lag_s": hist_lag, "retries": self.retries, "duplicates": self.duplicates,
            "sent_this_run": self.sent_this_run, "dead_lettered": self.dead_lettered,
            "duplicates_skipped": self.duplicates_skipped, "retry_expired": self.retry_expired,
            "report": self.report,
        }


class ProgressTracker(object):
    """Thread-safe progress of all partitions of a run."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self.parts = {}
        self.started = clock()
        self.events_sent = 0       # this process (Prometheus counters)
        self.bytes_sent = 0

    def add(self, part_id, total, done=0, bytes_done=0, position=None, status="pending", target_ts_ns=None):
        with self._lock:
            part = PartitionProgress(part_id, total, done, bytes_done, position, status, target_ts_ns)
            part._rate_mark = (self.clock(), done)
            self.parts[str(part_id)] = part

    def record_batch(self, part_id, events, nbytes, position, last_ts_ns=None, retries=0, duplicates=0, skipped=0):
        """Account an acked batch (``events`` sent and acked, ``skipped`` copies passed among
        them without sending) and update the EWMA rate."""
        now = self.clock()
        with self._lock:
            p = self.parts[str(part_id)]
            p.done += events + skipped
            p.duplicates_skipped += skipped
            p.bytes_done += nbytes
            p.sent_this_run += events
            p.position = position
            p.retries += retries
            p.duplicates += duplicates
            if last_ts_ns is not None:
                p.last_ts_ns = last_ts_ns
            self.events_sent += events
            self.bytes_sent += nbytes
            elapsed = now - p._rate_mark[0]
            if elapsed >= 0.5:
                inst = (p.done - p._rate_mark[1]) / elapsed
                p.rate = inst if p.rate is None else EWMA_ALPHA * inst + (1 - EWMA_ALPHA) * p.rate
                p._rate_mark = (now, p.done)

    def update(self, part_id, **fields):
        """Set fields (status, report, apply_lag_ms, ...) of a partition."""
        with self._lock:
            p = self.parts[str(part_id)]
            for key, value in fields.items():
                setattr(p, key, value)

    def snapshot(self):
        """A JSON-ready dict: totals plus one entry per partition."""
        with self._lock:
            parts = {pid: self.parts[pid].as_dict() for pid in sort_ids(self.parts)}
            sent, nbytes = self.events_sent, self.bytes_sent
        done = sum(p["events_done"] for p in parts.values())
        total = sum(p["events_total"] or 0 for p in parts.values())
        rates = [p["rate_eps"] for p in parts.values() if p["rate_eps"] and p["status"] == "running"]
        etas = [p["eta_s"] for p in parts.values() if p["eta_s"] is not None]
        return {"events_done": done, "events_total": total, "events_sent": sent, "bytes_sent": nbytes,
                "duplicates_skipped": sum(p["duplicates_skipped"] for p in parts.values()),
                "rate_eps": round(sum(rates), 1) if rates else None,
                "eta_s": max(etas) if etas and len(etas) == len(parts) else None,
                "elapsed_s": round(self.clock() - self.started, 1),
                "partitions": parts}


def format_progress_line(snap):
    """One human line: totals, rate, ETA, then per partition done/total and apply lag."""
    total = snap["events_total"] or 0
    pct = 100.0 * snap["events_done"] / total if total else 100.0
    eta = snap.get("eta_s")
    head = "replay %d/%d (%.1f%%) %s ev/s ETA %s" % (
        snap["events_done"], total, pct,
        "%.0f" % snap["rate_eps"] if snap.get("rate_eps") else "-",
        _fmt_duration(eta) if eta is not None else "-")
    cells = []
    for pid, p in snap["partitions"].items():
        lag = p.get("apply_lag_ms")
        cells.append("p%s %d/%s%s%s" % (
            pid, p["events_done"], p["events_total"] if p["events_total"] is not None else "?",
            " lag %dms" % lag if lag is not None else "",
            "" if p["status"] in ("running", "pending") else " " + p["status"]))
    return head + " | " + ", ".join(cells)


def _fmt_duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    if seconds >= 60:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def render_metrics(snap, run_id):
    """Prometheus text exposition of a progress snapshot."""
    run = _label(run_id)
    lines = [
        "# HELP replay_events_total Historic events acknowledged by the cluster (cursor total).",
        "# TYPE replay_events_total counter",
    ]
    for pid, p in snap["partitions"].items():
        lines.append('replay_events_total{run_id="%s",part_id="%s"} %d' % (run, _label(pid), p["events_done"]))
    lines += ["# HELP replay_bytes_total Bytes of historic events acknowledged by the cluster.",
              "# TYPE replay_bytes_total counter"]
    for pid, p in snap["partitions"].items():
        lines.append('replay_bytes_total{run_id="%s",part_id="%s"} %d' % (run, _label(pid), p["bytes_done"]))
    lines += ["# HELP replay_partition_lag_seconds Event-time distance from the last replayed event to the historic target.",
              "# TYPE replay_partition_lag_seconds gauge"]
    for pid, p in snap["partitions"].items():
        lag = p.get("historic_lag_s")
        if lag is None:
            lag = 0.0 if p["status"] == "done" else None
        if lag is not None:
            lines.append('replay_partition_lag_seconds{run_id="%s",part_id="%s"} %.3f' % (run, _label(pid), lag))
    lines += ["# HELP replay_events_remaining Historic events not yet acknowledged.",
              "# TYPE replay_events_remaining gauge"]
    for pid, p in snap["partitions"].items():
        if p["events_total"] is not None:
            lines.append('replay_events_remaining{run_id="%s",part_id="%s"} %d'
                         % (run, _label(pid), max(0, p["events_total"] - p["events_done"])))
    return "\n".join(lines) + "\n"


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_metrics_textfile(path, text):
    """Write atomically (temp file + rename) so a scraper never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def push_metrics(url, run_id, text, timeout=5):
    """PUT the metrics to a Prometheus Pushgateway (``<url>/metrics/job/ceptra_replay/run_id/<id>``)."""
    target = "%s/metrics/job/ceptra_replay/run_id/%s" % (url.rstrip("/"), run_id)
    resp = open_url(target, data=text.encode("utf-8"), method="PUT", timeout=timeout,
                    headers={"Content-Type": "text/plain; version=0.0.4"})
    try:
        return resp.status
    finally:
        resp.close()
