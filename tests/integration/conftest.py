"""Run playbooks against the lab from pytest and collect every task's module result.

The module tests' tasks are YAML files under targets/<name>/tasks/main.yml, run through
run_target.yml (``run_target`` fixture); a test passes the lab's URL and token and the
target's variables, then asserts on each task's result by task name.
"""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")
# The play that runs one target's tasks (targets/<name>/tasks/main.yml) against a cluster.
RUN_TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_target.yml")


@dataclass
class PlaybookResult:
    """What one ansible-playbook run produced."""

    rc: int
    stdout: str
    stderr: str
    records: list = field(default_factory=list)

    @property
    def results(self):
        """Task name -> module result of the last host that ran it."""
        return {rec["task"]: rec["result"] for rec in self.records}

    def status(self, task):
        """Task name -> ok|failed|skipped."""
        return {rec["task"]: rec["status"] for rec in self.records}[task]


def _ansible_playbook():
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return exe if os.path.exists(exe) else "ansible-playbook"


@pytest.fixture
def run_playbook(tmp_path):
    """Return run(text_or_path, extravars=None, check=False, diff=False, verbosity=0, env=None)."""

    def run(playbook, extravars=None, check=False, diff=False, verbosity=0, env=None, inventory=None):
        if os.path.exists(str(playbook)):
            path = str(playbook)
        else:
            handle = tempfile.NamedTemporaryFile("w", suffix=".yml", dir=tmp_path, delete=False)
            handle.write(playbook)
            handle.close()
            path = handle.name
        results_file = tmp_path / ("results-%d.jsonl" % len(list(tmp_path.iterdir())))
        cmd = [_ansible_playbook(), path, "-i", inventory or "localhost,", "-c", "local"]
        if extravars:
            cmd += ["-e", json.dumps(extravars)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        full_env = dict(os.environ)
        full_env.update({
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
            "ANSIBLE_CALLBACKS_ENABLED": "task_results",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "CEPTRA_TEST_RESULTS": str(results_file),
        })
        full_env.update(env or {})
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=full_env, cwd=str(tmp_path),
                              stdin=subprocess.DEVNULL, timeout=600)
        records = []
        if results_file.exists():
            records = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
        return PlaybookResult(proc.returncode, proc.stdout, proc.stderr, records)

    return run


@pytest.fixture
def run_target(run_playbook):
    """Return run(target, extravars, check=False, diff=False, verbosity=0, env=None, inventory=None):
    run_target.yml for targets/<target>; ``extravars`` hold ceptra_url and ceptra_token (or the
    ceptra_client_cert/_key and ceptra_ca_path of mutual TLS) and the target's own variables."""

    def run(target, extravars, **options):
        return run_playbook(RUN_TARGET, extravars=dict(extravars, target=target), **options)

    return run


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The test PKI of ``ceptra-lab certs`` (CA, server and one client identity per role)."""
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, "-m", "ceptra_lab", "certs", str(directory)], check=True, capture_output=True)
    return directory


@pytest.fixture
def lab_vars(lab):
    """Extra vars that point the modules at the module-scoped lab as an operator."""
    return {"ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"]}
