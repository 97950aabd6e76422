"""The README's command-line replay runs exactly as written, from a fresh checkout.

The README block is read from README.md and run by bash in a copy of this checkout that
has no collections path yet (as a fresh clone has none) and no PYTHONPATH; the copy
shares this checkout's .venv, which is what the README's first command leaves behind. The
lab plays the cluster the README's CEPTRA_URL points at.
"""

import os
import re
import shutil
import subprocess

from .replay_lab import START_NS, applied_counts, history_rows, write_sqlite

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_replay_commands():
    """The commands of the README's command-line replay block (without the export line)."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "ceptra-replay" in b]
    assert len(blocks) == 1, blocks
    lines = blocks[0].replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("export ", "#"))]


def fresh_checkout(dest):
    """The files of this checkout (tracked and new, as a clone would hold them) plus its .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = os.path.join(REPO, rel)
        if os.path.isfile(source):
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, rel))
    os.symlink(os.path.join(REPO, ".venv"), os.path.join(dest, ".venv"))
    assert not os.path.exists(os.path.join(dest, ".build"))
    return dest


def test_readme_command_line_replay_runs_as_written(lab_factory, tmp_path):
    commands = readme_replay_commands()
    assert commands == ["scripts/ceptra-replay run --run-id incident-4711 --source history.db "
                        "--cursor-store cursors.db"]
    checkout = fresh_checkout(str(tmp_path / "checkout"))
    write_sqlite(os.path.join(checkout, "history.db"), history_rows(2, 300, START_NS))
    lab = lab_factory(partitions=2, test_mode=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "CEPTRA_URL": lab.url, "CEPTRA_TOKEN": lab.tokens["operator"]}
    proc = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=checkout, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("replay 600/600 (100.0%)"), proc.stdout
    assert applied_counts(lab) == {"0": 300, "1": 300}
    assert os.path.islink(os.path.join(checkout, ".build", "collections", "ansible_collections", "ceptra", "backfill"))
    # a second run resumes from the cursors: nothing is left to send
    again = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=checkout, env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert again.returncode == 0 and applied_counts(lab) == {"0": 300, "1": 300}, again.stderr
