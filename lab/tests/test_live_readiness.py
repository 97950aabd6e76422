"""`ceptra-lab live` without --bundle keeps /readyz ready for 3 minutes (issue 9, point 5).

Plain events feed no metric, so the finalized horizon never moves; §3 ties watermark_stall
to routed events, so such traffic must never raise it (it used to from t = 60 s)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

DURATION_S = 180


@pytest.mark.slow
def test_plain_live_traffic_for_three_minutes_keeps_the_lab_ready(lab_factory):
    lab = lab_factory(partitions=4)
    live = subprocess.Popen([sys.executable, "-m", "ceptra_lab", "live", "--url", lab.url, "--token", "lab-ingest",
                             "--rate", "40", "--duration", str(DURATION_S), "--partitions", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    not_ready = []
    polls = 0
    try:
        while live.poll() is None:
            status, _, body = lab.request("GET", "/readyz", role="observer")
            polls += 1
            if status != 200 or not body["ready"]:
                not_ready.append({pid: doc["reasons"] for pid, doc in body["partitions"].items() if doc["reasons"]})
            time.sleep(2.0)
        output = live.stdout.read()
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0, output
    assert polls >= DURATION_S // 3 and not_ready == []
    state = lab.request("GET", "/v1/state", role="observer")[2]
    assert sum(p["applied_index"] for p in state["partitions"]) == 40 * DURATION_S
