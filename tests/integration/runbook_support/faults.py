"""Outage, wipe and fault helpers (the lab's test hooks) and waits on them."""

from __future__ import annotations

import time

from .labs import lab_get


def start_outage(lab, part_ids, duration_ms):
    """Fence ``part_ids`` for ``duration_ms``: appends refused, the span in unavailable_windows."""
    outage = {"part_ids": list(part_ids), "duration_ms": int(duration_ms)}
    status, _headers, body = lab.request("POST", "/v1/test/outage", body=outage)
    assert status == 200, body
    return body


def wait_outage_over(lab, part_ids, timeout=60.0):
    """Wait until every span of ``part_ids`` has ended; returns their unavailable_windows."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.time_ns()
        parts = {p["part_id"]: p for p in lab_get(lab, "/v1/state")["partitions"]}
        spans = {p: parts[p]["unavailable_windows"] for p in part_ids}
        if all(spans[p] and all(s["end_ts_ns"] <= now for s in spans[p]) for p in part_ids):
            return spans
        assert time.monotonic() < deadline, spans
        time.sleep(0.1)


def set_fault(lab, **fault):
    """POST /v1/test/faults (``part_id`` optional; see docs/lab.md)."""
    status, _headers, body = lab.request("POST", "/v1/test/faults", body=fault)
    assert status == 200, body
    return body


def wipe(lab, part_id, drop_checkpoint=False):
    """Wipe a partition's WAL (the full-recovery start)."""
    request = {"part_id": str(part_id), "drop_checkpoint": drop_checkpoint}
    status, _headers, body = lab.request("POST", "/v1/test/wipe", body=request)
    assert status == 200, body
    return body
