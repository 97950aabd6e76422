"""The README's first command (scripts/demo) runs a recovery against a fresh lab and succeeds."""

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_runs_a_backfill_end_to_end():
    proc = subprocess.run([os.path.join(REPO, "scripts", "demo")], capture_output=True, text=True,
                          cwd=REPO, stdin=subprocess.DEVNULL, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out), out[-4000:]
    processed = re.search(r"(\d+)/(\d+) historic rows processed, (\d+) duplicate copies skipped", out)
    assert processed, out[-4000:]
    done, total, copies = (int(g) for g in processed.groups())
    assert done == total == 10000 and copies > 0
    assert "stopped partitions: 0" in out
