"""Every entry point of every role under roles/ renders with ``ansible-doc -t role``.

The entry points are the keys of each role's meta/argument_specs.yml (the spec Ansible also
enforces at role entry); ansible-doc must render each with its short description and exactly
the options the spec declares, and each must have its tasks file. A new role or entry point
is a new test case with no change here.
"""

import os
import re

import pytest
import yaml

from .test_module_docs import REPO, run_ansible_doc

ROLES_DIR = os.path.join(REPO, "roles")


def discover_roles():
    """Role name -> its argument_specs (None when the role has no meta/argument_specs.yml)."""
    roles = {}
    if not os.path.isdir(ROLES_DIR):
        return roles
    for name in sorted(os.listdir(ROLES_DIR)):
        if not os.path.isdir(os.path.join(ROLES_DIR, name, "tasks")):
            continue
        specs = None
        for extension in ("yml", "yaml"):
            path = os.path.join(ROLES_DIR, name, "meta", "argument_specs." + extension)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    specs = (yaml.safe_load(handle) or {}).get("argument_specs")
        roles[name] = specs
    return roles


ROLES = discover_roles()
ENTRY_POINTS = [(role, entry) for role, specs in ROLES.items() for entry in sorted(specs or {})]


@pytest.fixture(scope="module")
def role_docs():
    """ansible-doc --json of every role, in one call."""
    return run_ansible_doc("role", list(ROLES))


@pytest.fixture(scope="module")
def role_text():
    """ansible-doc's text rendering of every role, in one call."""
    return run_ansible_doc("role", list(ROLES), json_output=False)


@pytest.mark.parametrize("role", list(ROLES))
def test_role_has_argument_specs(role):
    assert ROLES[role], "roles/%s has no meta/argument_specs.yml with argument_specs" % role


@pytest.mark.parametrize("role,entry", ENTRY_POINTS)
def test_entry_point_renders(role_docs, role_text, role, entry):
    spec = ROLES[role][entry]
    rendered = role_docs.get("ceptra.backfill." + role, {}).get("entry_points", {}).get(entry)
    assert rendered is not None, "ansible-doc does not render ceptra.backfill.%s entry point %s" % (role, entry)
    assert rendered.get("short_description"), "%s/%s: no short_description" % (role, entry)
    assert set(rendered.get("options") or {}) == set(spec.get("options") or {})
    for option, doc in (rendered.get("options") or {}).items():
        assert doc.get("description"), "%s/%s: option %s has no description" % (role, entry, option)
    # without colour ansible-doc marks the bold name with asterisks
    heading = r"ENTRY POINT: \*?%s\*? - %s" % (re.escape(entry), re.escape(rendered["short_description"]))
    assert re.search(heading, role_text), "the text rendering has no entry point %s of %s" % (entry, role)
    tasks = [os.path.join(ROLES_DIR, role, "tasks", entry + ext) for ext in (".yml", ".yaml")]
    assert any(os.path.isfile(path) for path in tasks), "roles/%s/tasks/%s.yml is missing" % (role, entry)
