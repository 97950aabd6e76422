"""A playbook run as AWX runs a job: ansible-runner, a fresh private data dir per run, the
connection as ``CEPTRA_*`` environment (as a credential injector sets it), AWX's meta extra
vars, and the audit callback recording the run."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field

import ansible_runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
PLAYBOOKS = os.path.join(REPO, "playbooks")
LAB_INVENTORY = os.path.join(REPO, "inventories", "lab", "hosts.yml")
_JOB_IDS = itertools.count(4711)


def awx_meta_vars(job_id, user="alice", template="ceptra-backfill-partial"):
    """The meta extra vars AWX gives every job (awx_* and their tower_* twins)."""
    meta = {"job_id": job_id, "job_launch_type": "manual", "job_template_id": 42, "job_template_name": template,
            "user_id": 7, "user_name": user, "user_email": "%s@example.com" % user, "project_revision": "0" * 40,
            "inventory_id": 3, "inventory_name": "ceptra-lab", "execution_node": "awx-ee-1"}
    out = {}
    for key, value in meta.items():
        out["awx_" + key] = value
        out["tower_" + key] = value
    return out


@dataclass
class JobResult:
    """What one job produced: ``rc``, ``status`` (successful/failed/canceled), ``stats``, the
    ``events``, ``stdout``, and per task name the last result and status."""

    rc: int
    status: str
    stats: dict
    events: list
    stdout: str
    data_dir: str
    results: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)

    @property
    def changed(self):
        """Sum of the changed counts over the hosts of the recap."""
        return sum((self.stats.get("changed") or {}).values())

    def failed_tasks(self):
        return [name for name, status in self.statuses.items() if status == "failed"]

    def set_stats(self):
        """The custom stats (``set_stats``) of the run."""
        for event in reversed(self.events):
            if event.get("event") == "playbook_on_stats":
                return event.get("event_data", {}).get("artifact_data") or {}
        return {}


class RunnerJob(object):
    """Run playbooks of this collection against a lab as AWX would.

    ``lab``: a LabProcess (its URL and the ``role``'s token go into ``CEPTRA_URL`` /
    ``CEPTRA_TOKEN``); ``audit_log``: the callback's log, shared by the jobs of a test so that
    verify.yml sees the scenario's records; ``workdir``: where data dirs go.
    """

    def __init__(self, lab, workdir, audit_log=None, role="operator", user="alice", env=None):
        self.lab = lab
        self.workdir = str(workdir)
        self.audit_log = audit_log or os.path.join(self.workdir, "audit.jsonl")
        self.role = role
        self.user = user
        self.env = dict(env or {})

    def envvars(self):
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        env = {
            "CEPTRA_URL": self.lab.url,
            "CEPTRA_TOKEN": self.lab.tokens[self.role],
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_CALLBACKS_ENABLED": "ceptra.backfill.audit",
            "CEPTRA_AUDIT_LOG": self.audit_log,
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "CEPTRA_REPORT_DIR": os.path.join(self.workdir, "reports"),
            "CEPTRA_HOLD_DIR": self.workdir,
            "PATH": path,
        }
        env.update(self.env)
        return env

    def _kwargs(self, playbook, extravars, check, job_id):
        data_dir = tempfile.mkdtemp(prefix="job-%d-" % job_id, dir=self.workdir)
        extra = awx_meta_vars(job_id, user=self.user)
        extra.update(extravars or {})
        playbook_path = playbook if os.path.isabs(playbook) else os.path.join(PLAYBOOKS, playbook)
        return data_dir, dict(private_data_dir=data_dir, playbook=playbook_path, inventory=LAB_INVENTORY,
                              extravars=extra, envvars=self.envvars(), cmdline="--check" if check else None,
                              quiet=True, settings={"suppress_env_files": True})

    def run(self, playbook, extravars=None, check=False):
        """Run a playbook to its end; returns a JobResult."""
        job_id = next(_JOB_IDS)
        data_dir, kwargs = self._kwargs(playbook, extravars, check, job_id)
        runner = ansible_runner.run(**kwargs)
        return self._result(runner, data_dir)

    def start(self, playbook, extravars=None, check=False):
        """Start a playbook in the background; returns ``(job, cancel)``: ``job.wait()`` gives the
        JobResult, ``cancel()`` kills the run (as AWX's cancel does)."""
        job_id = next(_JOB_IDS)
        data_dir, kwargs = self._kwargs(playbook, extravars, check, job_id)
        cancelled = threading.Event()
        kwargs["cancel_callback"] = cancelled.is_set
        thread, runner = ansible_runner.run_async(**kwargs)
        return _Background(self, thread, runner, data_dir), cancelled.set

    def _result(self, runner, data_dir):
        events = list(runner.events)
        results, statuses = {}, {}
        for event in events:
            name = event.get("event")
            data = event.get("event_data") or {}
            status = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                      "runner_item_on_ok": None}.get(name)
            if status and data.get("task"):
                statuses[data["task"]] = "ok" if status == "ok" and data.get("ignore_errors") is None else status
                results[data["task"]] = data.get("res") or {}
        stdout = runner.stdout.read() if runner.stdout else ""
        return JobResult(rc=runner.rc, status=runner.status, stats=runner.stats or {}, events=events, stdout=stdout,
                         data_dir=data_dir, results=results, statuses=statuses)


class _Background(object):
    def __init__(self, job, thread, runner, data_dir):
        self.job, self.thread, self.runner, self.data_dir = job, thread, runner, data_dir

    def wait(self, timeout=600):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the job did not end within %s s" % timeout
        return self.job._result(self.runner, self.data_dir)
