"""ceptra_lab.background: a detached lab recorded by URL and pid, stopped by that pid only."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from ceptra_lab import background

LAB_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_background(*args):
    env = dict(os.environ, PYTHONPATH=LAB_ROOT)
    return subprocess.run([sys.executable, "-m", "ceptra_lab.background", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_start_records_url_and_pid_and_stop_ends_that_process(tmp_path):
    state_file = str(tmp_path / "lab.json")
    started = run_background("start", "--state", state_file, "--", "serve", "--partitions", "2", "--port", "0")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["started"] and state == dict(json.loads((tmp_path / "lab.json").read_text()), started=True)
    with urllib.request.urlopen(state["url"] + "/healthz", timeout=10) as response:
        assert response.status == 200
    # a second start finds the running lab and starts no other
    again = json.loads(run_background("start", "--state", state_file, "--", "serve", "--partitions", "2",
                                      "--port", "0").stdout)
    assert not again["started"] and again["pid"] == state["pid"]
    stopped = run_background("stop", "--state", state_file)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"pid": state["pid"], "url": state["url"], "stopped": True, "killed": False,
                                          "clean_shutdown": True}
    assert not os.path.exists(state_file) and not background._alive(state["pid"])
    assert json.loads(run_background("stop", "--state", state_file).stdout)["stopped"] is False


def test_stop_never_signals_a_pid_that_is_not_a_lab(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state_file = tmp_path / "lab.json"
        state_file.write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": other.pid}))
        result = background.stop(str(state_file))
        assert result["stopped"] is False and "not running a lab" in result["reason"]
        assert other.poll() is None and not state_file.exists()
    finally:
        other.kill()
        other.wait()


def test_a_lab_that_cannot_start_is_a_message(tmp_path):
    result = run_background("start", "--state", str(tmp_path / "lab.json"), "--", "serve", "--partitions", "0")
    assert result.returncode == 2 and "--partitions must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "lab.json").exists()
    result = run_background("start", "--state", str(tmp_path / "lab.json"), "--", "certs", "x")
    assert result.returncode == 2 and "must start with 'serve'" in result.stderr
