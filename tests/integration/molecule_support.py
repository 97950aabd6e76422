"""Running the Molecule scenarios under extensions/molecule from pytest (so CI counts them).

A scenario is a directory with a ``molecule.yml`` under extensions/molecule (nested ones, such
as ``group/name``, too); a new one is a new test with no change here. Scenarios of one lab group
share one lab (``shared_state: true`` in extensions/molecule/config.yml): the group's module
fixture runs the ``default`` scenario's create (a lab on a free port; ``lab.json`` in the
group's ephemeral directory records its URL and pid) and, at the end, its destroy (SIGTERM to
that pid), then checks that the process is gone. Each test is ``molecule test -s <name>
--destroy never``: the default's create is skipped (the lab is up) and the scenario's own
sequence runs against it. A role scenario must converge, pass idempotence (a second converge
changes nothing) and verify; a scenario missing one of those playbooks fails rather than
passing on nothing.

Lab groups: the scenarios that wipe partitions (full recovery) or switch bundles (policy) get
a lab of their own, so the shared roles' scenarios (validate compares partitions 2 and 3) see a
lab no wipe touched; each group is its own test file, so the groups run side by side.
"""


import json
import os
import re
import subprocess
import sys
import time

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOLECULE_ROOT = os.path.join(REPO, "extensions", "molecule")
COLLECTIONS = os.path.join(REPO, ".build", "collections")
DEFAULT = "default"
# What every role scenario must run, in order, each reported as executed successfully.
ROLE_ACTIONS = ("converge", "idempotence", "verify")


def discover_scenarios():
    """Scenario names (paths relative to extensions/molecule), the default first."""
    names = []
    for folder, _dirs, files in os.walk(MOLECULE_ROOT):
        if "molecule.yml" in files and folder != MOLECULE_ROOT:
            names.append(os.path.relpath(folder, MOLECULE_ROOT).replace(os.sep, "/"))
    return sorted(names, key=lambda name: (name != DEFAULT, name))


SCENARIOS = discover_scenarios()
# Scenarios that change a lab for good (wipes, bundle switches) run on a lab of their own;
# every other scenario (a new one included) runs in the "shared" group.
# The checklist scenario runs a whole scenario_partial in its side effect: on a lab of its own
# it runs beside the shared group rather than after it.
LAB_GROUPS = {
    "recovery": ("full_recovery", "ingress_gate"),
    "policy": ("activation", "policy_preflight", "wal_replay"),
    "checklist": ("checklist",),
}


def scenarios_of(group):
    """The scenarios of a lab group, in the order they run (the default first in "shared")."""
    if group != "shared":
        return [name for name in LAB_GROUPS[group] if name in SCENARIOS]
    grouped = {name for names in LAB_GROUPS.values() for name in names}
    return [name for name in SCENARIOS if name not in grouped]


def molecule_env(ephemeral_dir):
    """The environment molecule runs in: this venv's tools first, the collection linked in
    .build/collections, one shared ephemeral directory (so runs never meet another's lab)."""
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ)
    env.update({
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral_dir),
        "MOLECULE_PROJECT_DIRECTORY": REPO,
        "ANSIBLE_LOCAL_TEMP": os.path.join(str(ephemeral_dir), "ansible-tmp"),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    })
    return env


def run_molecule(env, *args, timeout=600):
    """``molecule <args>`` from the collection root; returns (rc, combined output, seconds)."""
    exe = os.path.join(os.path.dirname(sys.executable), "molecule")
    started = time.monotonic()
    proc = subprocess.run([exe, *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def executed(output, scenario, action):
    """True if molecule's report says ``<scenario> ➜ <action>: Executed: Successful``
    (``>`` in place of the arrow without colour)."""
    return re.search(r"^%s (➜|>) %s: Executed: Successful" % (re.escape(scenario), action), output, re.M) is not None


def lab_state(ephemeral_dir):
    with open(os.path.join(str(ephemeral_dir), "lab.json"), encoding="utf-8") as handle:
        return json.load(handle)


def pid_running(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_lab(tmp_path_factory):
    """The default scenario's lab for one test file's scenarios: yields (molecule env, lab.json record)."""
    ephemeral = tmp_path_factory.mktemp("molecule-ephemeral")
    env = molecule_env(ephemeral)
    state = None
    try:
        rc, output, _seconds = run_molecule(env, "create", "-s", DEFAULT)
        assert rc == 0 and executed(output, DEFAULT, "create"), output[-4000:]
        state = lab_state(ephemeral)
        yield env, state
    finally:
        # also after a failed create or test: a lab that started must not outlive the tests
        rc, output, _seconds = run_molecule(env, "destroy", "-s", DEFAULT)
    assert rc == 0 and executed(output, DEFAULT, "destroy"), output[-4000:]
    assert not os.path.exists(os.path.join(str(ephemeral), "lab.json"))
    assert not pid_running(state["pid"]), "the default scenario's destroy left lab pid %s running" % state["pid"]


def run_scenario(molecule_lab, scenario, record_property):
    """``molecule test -s scenario`` on the group's lab; asserts every action it must run ran."""
    env, lab = molecule_lab
    folder = os.path.join(MOLECULE_ROOT, scenario)
    if scenario != DEFAULT:
        missing = [action for action in ("converge", "verify") if not os.path.isfile(os.path.join(folder, action + ".yml"))]
        assert not missing, "scenario %s has no %s playbook" % (scenario, " or ".join(missing))
    rc, output, seconds = run_molecule(env, "test", "-s", scenario, "--destroy", "never")
    record_property("molecule_seconds", round(seconds, 1))
    assert rc == 0, output[-6000:]
    actions = ("verify",) if scenario == DEFAULT else ROLE_ACTIONS
    not_run = [action for action in actions if not executed(output, scenario, action)]
    assert not not_run, "scenario %s did not run %s successfully:\n%s" % (scenario, ", ".join(not_run), output[-6000:])
    assert pid_running(lab["pid"]), "scenario %s stopped the shared lab" % scenario


def group_tests(group):
    """The fixture and the test of one lab group's test file:
    ``molecule_lab, test_scenario = group_tests("policy")`` at module level."""

    @pytest.fixture(scope="module")
    def molecule_lab(tmp_path_factory):
        """This group's lab, created by the default scenario and destroyed after the last test."""
        yield from group_lab(tmp_path_factory)

    @pytest.mark.parametrize("scenario", scenarios_of(group))
    def test_scenario(molecule_lab, scenario, record_property):  # pylint: disable=redefined-outer-name
        run_scenario(molecule_lab, scenario, record_property)

    return molecule_lab, test_scenario
