"""The execution environment definitions: execution-environment.yml (standalone, ansible-builder
v3) makes a build context with `ansible-builder create`, and meta/execution-environment.yml (the
collection's, read when an image installs the collection) names requirement files that exist.

No image is built here; the build context is what a build would use.
"""

import os
import re
import subprocess
import sys

import pytest
import yaml

from .awx_docs import REPO

BIN = os.path.dirname(sys.executable)


def _load(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _pins():
    """{package: version} pinned in requirements-dev.txt."""
    with open(os.path.join(REPO, "requirements-dev.txt"), encoding="utf-8") as handle:
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", handle.read(), re.M))


@pytest.fixture(scope="module")
def build_context(tmp_path_factory):
    """`ansible-builder create` on execution-environment.yml, after building the collection tarball it
    takes (.build/ee/), as the instructions at the top of the file say."""
    out = os.path.join(REPO, ".build", "ee")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        os.unlink(os.path.join(out, name))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO, "--output-path", out, "--force"],
                   check=True, capture_output=True, text=True)
    context = tmp_path_factory.mktemp("ee-context")
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", str(context), "--output-filename", "Containerfile"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return context


def test_ansible_builder_is_pinned_to_3_2():
    assert _pins()["ansible-builder"].startswith("3.2.")
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().startswith("3.2.")


def test_build_context_holds_the_collection_and_its_requirements(build_context):
    definition = _load("execution-environment.yml")
    assert definition["version"] == 3
    build = build_context / "_build"
    version = _load("galaxy.yml")["version"]
    assert (build / "collections" / ("ceptra-backfill-%s.tar.gz" % version)).is_file()
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert galaxy == {"collections": [{"name": "collections/ceptra-backfill-%s.tar.gz" % version, "type": "file"}]}
    # the Python and system requirements are the collection's own files, copied verbatim
    assert (build / "requirements.txt").read_text() == open(os.path.join(REPO, "meta", "ee-requirements.txt")).read()
    assert (build / "bindep.txt").read_text() == open(os.path.join(REPO, "meta", "ee-bindep.txt")).read()
    containerfile = (build_context / "Containerfile").read_text()
    pins = _pins()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"' % (
        pins["ansible-core"], pins["ansible-runner"]) in containerfile
    # every job of the image runs with the audit callback, its log on the mounted volume
    assert "ENV ANSIBLE_CALLBACKS_ENABLED=ceptra.backfill.audit" in containerfile
    assert "ENV CEPTRA_AUDIT_LOG=/var/log/ceptra/" in containerfile


def test_collection_meta_execution_environment_is_read_by_ansible_builder(tmp_path):
    meta = _load("meta/execution-environment.yml")
    assert meta["version"] == 3
    for kind in ("python", "system"):
        assert os.path.isfile(os.path.join(REPO, meta["dependencies"][kind]))
    # what an image that installs the collection from Galaxy gets: introspect reads the installed
    # collection's meta/execution-environment.yml as ansible-builder does during a build
    collections = tmp_path / "ansible_collections" / "ceptra"
    collections.mkdir(parents=True)
    os.symlink(REPO, collections / "backfill")
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    found = yaml.safe_load(proc.stdout)
    python = " ".join(found["python"])
    for requirement in ("jmespath", "psycopg", "matplotlib"):
        assert requirement in python
    assert any(line.startswith("ca-certificates") for line in found["system"])
