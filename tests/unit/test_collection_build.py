"""The built collection carries the plugins and docs, and leaves the lab and benchmarks out."""

import os
import subprocess
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_build_excludes_lab_and_benchmarks(tmp_path):
    galaxy = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    proc = subprocess.run([galaxy, "collection", "build", REPO, "--output-path", str(tmp_path), "--force"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    tarballs = [name for name in os.listdir(tmp_path) if name.endswith(".tar.gz")]
    assert tarballs == ["ceptra-backfill-0.1.0.tar.gz"]
    with tarfile.open(tmp_path / tarballs[0]) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert "meta/runtime.yml" in names
    assert not [n for n in names if n.startswith(("lab/", "benchmarks/", "scripts/", "extensions/molecule", ".build", ".venv"))]
    assert any(n.startswith("plugins/modules/") and n.endswith(".py") for n in names)
