"""Every module named in the action group exists, renders with ansible-doc, and documents its attributes."""

import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")

with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as handle:
    ACTION_GROUP = yaml.safe_load(handle)["action_groups"]["cp"]

# Modules that never talk to the cluster (they read and write files on the controller): no
# connection options, so not in the cp group (module_defaults for the group would pass them
# options they do not take).
LOCAL_MODULES = ["audit_chain_info", "audit_log_check", "history_info", "hold_point", "report"]


def test_action_group_lists_exactly_the_modules():
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "plugins", "modules"))
                     if name.endswith(".py") and not name.startswith("_"))
    assert sorted(ACTION_GROUP + LOCAL_MODULES) == modules
    assert not set(ACTION_GROUP) & set(LOCAL_MODULES)


def run_ansible_doc(plugin_type, names, json_output=True):
    """ansible-doc -t ``plugin_type`` of the collection's ``names``: parsed --json, or the text."""
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([exe, "-t", plugin_type] + (["--json"] if json_output else [])
                          + ["ceptra.backfill." + name for name in names],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if json_output else proc.stdout


def ansible_doc(modules):
    """ansible-doc --json of the collection's ``modules``."""
    return run_ansible_doc("module", modules)


@pytest.fixture(scope="module")
def docs():
    return ansible_doc(ACTION_GROUP)


@pytest.mark.parametrize("module", ACTION_GROUP)
def test_module_renders_with_attributes(docs, module):
    doc = docs["ceptra.backfill." + module]["doc"]
    assert doc["short_description"]
    # ansible-doc merges the connection fragment into the options it renders.
    assert {"url", "token", "client_cert", "client_key", "ca_path", "validate_certs", "timeout"} <= set(doc["options"])
    attributes = doc["attributes"]
    assert {"check_mode", "diff_mode", "action_group"} <= set(attributes)
    assert "ceptra.backfill.cp" in attributes["action_group"]["membership"]
    assert docs["ceptra.backfill." + module]["examples"].strip()


def test_local_modules_render_without_the_connection_options():
    for module, entry in ansible_doc(LOCAL_MODULES).items():
        doc = entry["doc"]
        assert doc["short_description"] and entry["examples"].strip(), module
        assert "url" not in doc["options"] and "action_group" not in doc["attributes"], module
        assert {"check_mode", "diff_mode"} <= set(doc["attributes"]), module
