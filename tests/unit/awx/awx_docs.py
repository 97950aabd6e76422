"""The documented options of the awx.awx modules, read from the PyPI ``ansible`` wheel.

The wheel ships awx.awx (``ansible_collections/awx/awx/plugins/modules/*.py``). It is
downloaded once with pip (no dependencies, not installed) into ``.build/awx-wheel/``, and
the DOCUMENTATION of the modules the definitions use is parsed from the module sources
without importing them (``ast``: no awx.awx code runs) and cached as JSON beside it.
"""

import ast
import fcntl
import glob
import json
import os
import subprocess
import sys
import zipfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# ansible 12 is the community package of ansible-core 2.19, the core this collection pins.
ANSIBLE_PACKAGE = "ansible==12.3.0"
CACHE = os.path.join(REPO, ".build", "awx-wheel")
MODULES = ("credential_type", "credential", "execution_environment", "project", "inventory", "host", "group",
           "job_template", "workflow_job_template", "workflow_job_template_node")


def _download_wheel(cache):
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "ansible-%s-*.whl" % ANSIBLE_PACKAGE.split("==")[1]))
    if wheels:
        return wheels[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--disable-pip-version-check", "-q", "-d", cache, ANSIBLE_PACKAGE],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=900)
    wheels = glob.glob(os.path.join(cache, "ansible-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError("pip download %s failed (rc %s): %s" % (ANSIBLE_PACKAGE, proc.returncode, proc.stderr[-2000:]))
    return wheels[0]


def _documentation(source):
    """The DOCUMENTATION string of a module's source, without running it."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise ValueError("no DOCUMENTATION")


def awx_module_docs(cache=CACHE):
    """{module: {"version": collection version, "options": {...}}} for the MODULES of awx.awx."""
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # test workers in parallel download once
        return _cached_docs(cache)


def _cached_docs(cache):
    cached = os.path.join(cache, "awx-modules-%s.json" % ANSIBLE_PACKAGE.split("==")[1])
    if os.path.exists(cached):
        with open(cached, encoding="utf-8") as handle:
            return json.load(handle)
    wheel = _download_wheel(cache)
    docs = {}
    with zipfile.ZipFile(wheel) as archive:
        manifest = json.loads(archive.read("ansible_collections/awx/awx/MANIFEST.json"))
        for module in MODULES:
            source = archive.read("ansible_collections/awx/awx/plugins/modules/%s.py" % module).decode("utf-8")
            docs[module] = {"version": manifest["collection_info"]["version"],
                            "options": _documentation(source)["options"]}
    with open(cached + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(docs, handle, indent=1, sort_keys=True)
    os.replace(cached + ".tmp", cached)
    return docs
