"""Live replay progress and the report, end to end against the lab.

- while the replay loop retries, every round prints one line per partition in the normal
  ansible-playbook output, and the audit log records the same figures;
- under ansible-runner (as AWX runs jobs) the same lines arrive as job events next to the
  runner_retry events that carry the module's figures;
- the report module draws those records (with matplotlib) or shows tables (on an interpreter
  without it); both pages are rendered by headless chromium to PNGs kept as artifacts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
ARTIFACTS = os.path.join(REPO, ".build", "artifacts")
GAMING = os.path.join(os.environ["CEPTRA_SHARED"], "reference/bundles/gaming_cheat_detection.yaml")
PARTITIONS = 4
PER_PARTITION = 600
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]

REPLAY = """
- name: Replay with progress
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/ceptra.backfill.cp: {url: "{{ ceptra_url }}", token: "{{ ceptra_token }}"}
  tasks:
    - name: Replay
      ceptra.backfill.historic_replay:
        source: {type: sqlite, path: "{{ history }}"}
        cursor_store: {type: sqlite, path: "{{ cursors }}"}
        run_id: "{{ replay_run }}"
        order_by: raft_index
        time_budget: 0.5
        initial_rate: 300
        max_rate: 300
      register: replay
      until: replay is failed or replay.done
      retries: 200
      delay: 0
"""

REPORT = """
    - name: Report
      ceptra.backfill.report:
        dest: "{{ out }}/charts"
        title: "Replay {{ replay_run }}"
        checklist: &checklist
          - name: Every historic event replayed
            section: Completion checklist
            ok: "{{ replay.events_done == replay.events_total }}"
            evidence: {events_done: "{{ replay.events_done }}", events_total: "{{ replay.events_total }}"}
          - name: No partition stopped
            ok: "{{ replay.stopped | length == 0 }}"
            evidence: "{{ replay.stopped }}"
          - name: Snapshot digests equal the reference lab
            ok: null
            evidence: not compared in this test
      register: with_charts
    - name: Report on a controller without matplotlib
      ceptra.backfill.report:
        dest: "{{ out }}/tables"
        title: "Replay {{ replay_run }}"
        checklist: *checklist
      vars:
        ansible_python_interpreter: "{{ bare_python }}"
      register: with_tables
"""


def seed(path):
    from ceptra_lab.traffic import seed_history

    return seed_history("sqlite:" + str(path), partitions=PARTITIONS, events_per_partition=PER_PARTITION,
                        bundle=GAMING, start_ns=time.time_ns() - 10 * 60 * 1_000_000_000, seed=3)


def replay_vars(lab, tmp_path, run):
    history = tmp_path / "history.db"
    seed(history)
    return {"ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"], "history": str(history),
            "cursors": str(tmp_path / "cursors.db"), "replay_run": run}


PART_LINE = re.compile(r"^\[localhost\]   replay (\S+) p(\d+): (\d+)/(\d+) \(([\d.]+)%\) (\S+) ev/s ETA (\S+) "
                       r"apply lag (\S+)(?: ms)? repl lag (\S+)(?: ms)? (\w+)$")


def progress_blocks(text):
    """Per retry: the partition lines printed right after it (as (part_id, done, total, state))."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.startswith("FAILED - RETRYING: [localhost]: Replay"):
            assert re.match(r"^\[localhost\] replay \S+ round \d+: \d+/\d+ ", lines[i + 1]), lines[i + 1]
            block = []
            for follow in lines[i + 2:i + 2 + PARTITIONS]:
                match = PART_LINE.match(follow)
                assert match, follow
                block.append((match.group(2), int(match.group(3)), int(match.group(4)), match.group(10)))
            blocks.append(block)
    return blocks


def bare_python(tmp_path):
    """An interpreter without matplotlib (a fresh venv of the base Python, no packages)."""
    target = tmp_path / "bare-venv"
    venv.EnvBuilder(with_pip=False).create(str(target))
    python = str(target / "bin" / "python")
    check = subprocess.run([python, "-c", "import matplotlib"], capture_output=True, check=False)
    assert check.returncode != 0, "the bare venv can import matplotlib"
    return python


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed; scripts/test installs it (scripts/ensure-chromium)")


def screenshot(html_path, png_path, tmp_path):
    """Render a page in headless chromium to a PNG (a fresh profile per call)."""
    os.makedirs(os.path.dirname(png_path), exist_ok=True)
    if os.path.exists(png_path):
        os.unlink(png_path)
    profile = tmp_path / ("chromium-profile-%d" % len(os.listdir(tmp_path)))
    cmd = [chromium()] + CHROMIUM_FLAGS + [
        "--user-data-dir=%s" % profile, "--window-size=1280,2400", "--screenshot=%s" % png_path,
        "file://%s" % html_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and os.path.exists(png_path), proc.stderr[-2000:]
    return png_path


# matplotlib's first two line colours (partitions 0 and 1); the page's own CSS uses neither
LINE_COLOURS = {"p0": (31, 119, 180), "p1": (255, 127, 14)}


def line_pixels(png_path):
    """{colour name: pixels of that chart-line colour} and the image size (rows, columns)."""
    from matplotlib import image

    pixels = image.imread(png_path)[:, :, :3] * 255.0
    counts = {}
    for name, rgb in LINE_COLOURS.items():
        distance = abs(pixels - rgb).max(axis=2)
        counts[name] = int((distance < 30).sum())
    return counts, pixels.shape[:2]


def test_replay_rounds_print_progress_and_the_report_renders(lab_factory, run_playbook, tmp_path, record_property):
    lab = lab_factory(partitions=PARTITIONS, test_mode=True)
    log = tmp_path / "audit.jsonl"
    extravars = replay_vars(lab, tmp_path, "progress-lines")
    extravars.update(out=str(tmp_path / "out"), bare_python=bare_python(tmp_path))
    result = run_playbook(REPLAY + REPORT, extravars=extravars,
                          env={"ANSIBLE_CALLBACKS_ENABLED": "task_results,ceptra.backfill.audit",
                               "CEPTRA_AUDIT_LOG": str(log)})
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    replay = result.results["Replay"]
    assert replay["done"] and replay["events_done"] == PARTITIONS * PER_PARTITION

    blocks = progress_blocks(result.stdout)
    assert len(blocks) >= 2, result.stdout[-3000:]            # at 300 ev/s per partition: several rounds
    for block in blocks:
        assert [b[0] for b in block] == [str(p) for p in range(PARTITIONS)]
        assert all(total == PER_PARTITION and 0 <= done <= total for dummy, done, total, dummy2 in block)
    # progress moves forward round after round
    assert sum(b[1] for b in blocks[-1]) > sum(b[1] for b in blocks[0])

    records = [json.loads(line) for line in log.read_text().splitlines()]
    retries = [r for r in records if r["event"] == "retry"]
    assert len(retries) == len(blocks)
    for record, block in zip(retries, blocks):
        assert [(pid, p["events_done"]) for pid, p in record["progress"]["partitions"].items()] == \
            [(pid, done) for pid, done, dummy, dummy2 in block]

    charts, tables = result.results["Report"], result.results["Report on a controller without matplotlib"]
    assert charts["charts_rendered"] is True and len(charts["files"]["charts"]) == 4
    assert tables["charts_rendered"] is False and "matplotlib" in tables["charts_note"]
    assert charts["summary"] == tables["summary"] == {"ok": False, "checklist_ok": False, "items": 3, "passed": 2,
                                                      "failed": 0, "unchecked": 1, "audit_chain_ok": True}
    model = json.loads(open(charts["files"]["json"]).read())
    assert [p["part_id"] for p in model["partitions"]] == ["0", "1", "2", "3"]
    assert all(p["status"] == "done" and p["events_done"] == PER_PARTITION for p in model["partitions"])
    assert len(model["progress"]["0"]) == len(blocks) + 1      # every round plus the final result

    shots = {}
    for name, page in (("charts", charts["files"]["html"]), ("tables", tables["files"]["html"])):
        png = screenshot(page, os.path.join(ARTIFACTS, "report-%s.png" % name), tmp_path)
        record_property("artifact", png)
        print("rendered report page (%s): %s" % (name, png))
        shots[name] = line_pixels(png)
    assert shots["charts"][1] == shots["tables"][1] == (2400, 1280)
    # the page with charts shows every partition's line (partitions that progress alike draw over
    # each other, so the first colours show fewer pixels); the tables page has none of their colours
    assert min(shots["charts"][0].values()) > 100 and max(shots["tables"][0].values()) < 10, shots


def test_runner_events_carry_the_progress_lines(lab_factory, tmp_path):
    import ansible_runner

    lab = lab_factory(partitions=PARTITIONS, test_mode=True)
    log = tmp_path / "audit.jsonl"
    extravars = replay_vars(lab, tmp_path, "progress-runner")
    extravars.update({"awx_job_id": 77, "awx_user_name": "carol", "awx_job_template_name": "replay"})
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    (private / "project" / "replay.yml").write_text(REPLAY)
    bin_dir = os.path.dirname(sys.executable)
    run = ansible_runner.run(
        private_data_dir=str(private), playbook="replay.yml", quiet=True, extravars=extravars,
        inventory="localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable,
        envvars={"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_CALLBACKS_ENABLED": "ceptra.backfill.audit",
                 "CEPTRA_AUDIT_LOG": str(log), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")})
    assert run.status == "successful", run.stdout.read()[-3000:]
    events = list(run.events)
    retries = [e for e in events if e["event"] == "runner_retry"]
    assert len(retries) >= 2
    for event in retries:
        parts = event["event_data"]["res"]["partitions"]
        assert sorted(parts) == [str(p) for p in range(PARTITIONS)]
    progress_events = [e for e in events if e.get("stdout", "").startswith("[localhost] replay progress-runner round")]
    assert len(progress_events) == len(retries)
    for event, retry in zip(progress_events, retries):
        lines = event["stdout"].splitlines()
        assert len(lines) == 1 + PARTITIONS
        for line in lines[1:]:
            match = PART_LINE.match(line)
            assert match, line
            figures = retry["event_data"]["res"]["partitions"][match.group(2)]
            assert int(match.group(3)) == figures["events_done"] and match.group(10) == figures["status"]
        assert event["event_data"].get("task") == "Replay"          # the line belongs to the replay task
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["operator"] for r in records} == {"carol"} and records[0]["run"] == "awx-job-77"
