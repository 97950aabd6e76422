"""The README's first command (scripts/demo) runs scenario_partial end to end against the embedded
default (lab + SQLite history, an outage, live traffic on) and ends with the verify report."""

import os
import re
import socket
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_runs_the_partial_recovery_and_prints_the_verify_report():
    proc = subprocess.run([os.path.join(REPO, "scripts", "demo")], capture_output=True, text=True,
                          cwd=REPO, stdin=subprocess.DEVNULL, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # the demo stops both labs it started (they listen no more)
    urls = re.search(r"lab at (http://\S+), reference at (http://\S+),", out).groups()
    for url in urls:
        host, port = url.split("//", 1)[1].rstrip("/").split(":")
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=2).close()
    recaps = re.findall(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out)
    assert len(recaps) == 2, out[-4000:]             # scenario_partial and verify.yml
    assert re.search(r"\[localhost\]   replay partial-DEMO-1 p1: \d+/\d+", out), out[-4000:]   # progress per round
    assert "partitions 1, 2, window [" in out        # the plan found the outage by itself
    report = out[out.index("== the verify report"):]
    assert "**PASS** - 6 of 6 checks passed" in report
    assert report.count("| PASS |") == 6
