"""The ceptra-lab command line: certs, serve argument errors, test mode off."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography import x509

from ceptra_lab.auth import ROLES, load_tokens
from ceptra_lab.cli import main
from ceptra_lab.testing import LabProcess

LAB_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=LAB_ROOT)
    return subprocess.run([sys.executable, "-m", "ceptra_lab", *args], capture_output=True, text=True, env=env, timeout=60)


def test_certs_writes_ca_server_and_role_certificates(tmp_path):
    result = run_cli("certs", str(tmp_path))
    assert result.returncode == 0, result.stderr
    expected = {"ca.pem", "server.pem", "server-key.pem"} | {f"{r}.pem" for r in ROLES} | {f"{r}-key.pem" for r in ROLES}
    assert expected <= set(os.listdir(tmp_path))
    for role in ROLES:
        cert = x509.load_pem_x509_certificate((tmp_path / f"{role}.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://ceptra.lab/role/{role}"]
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert oct(os.stat(tmp_path / "admin-key.pem").st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("args,message", [
    (["serve", "--partitions", "0", "--port", "0"], "--partitions must be at least 1"),
    (["serve", "--partitions", "2", "--port", "0", "--apply-capacity", "-3"], "--apply-capacity"),
    (["serve", "--partitions", "2", "--port", "0", "--tls-dir", "/nonexistent"], "ceptra-lab certs"),
    (["serve", "--partitions", "2", "--port", "0", "--tokens", "/nonexistent.json"], "cannot read tokens file"),
])
def test_serve_argument_errors_are_readable(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_tokens_file_validation(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"tokens": [{"token": "a", "role": "root"}]}')
    with pytest.raises(ValueError, match="role 'root'"):
        load_tokens(str(path))
    path.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokens(str(path))


def test_seed_history_cli_reports_bad_bundle(tmp_path, capsys):
    code = main(["seed-history", "--db", f"sqlite:{tmp_path / 'h.db'}", "--partitions", "1",
                 "--events-per-partition", "1", "--bundle", str(tmp_path / "missing.yaml")])
    assert code == 2 and "cannot read bundle" in capsys.readouterr().err


def test_test_rpcs_are_404_without_test_mode():
    with LabProcess(partitions=1, test_mode=False) as lab:
        for method, path in (("GET", "/v1/test/faults"), ("POST", "/v1/test/wipe"), ("GET", "/v1/test/metrics-snapshot")):
            status, _, body = lab.request(method, path, {} if method == "POST" else None)
            assert status == 404 and body["status"] == 404
        _, _, state = lab.request("GET", "/v1/state", role="observer")
        assert state["cluster"]["test_mode"] is False


def test_bound_gc_pauses_freezes_survivors_of_a_full_collection():
    import gc
    from ceptra_lab.cli import bound_gc_pauses
    before = list(gc.callbacks)
    try:
        bound_gc_pauses()
        bound_gc_pauses()   # idempotent: one callback
        added = [cb for cb in gc.callbacks if cb not in before]
        assert len(added) == 1
        gc.unfreeze()
        gc.collect(1)
        assert gc.get_freeze_count() == 0      # young collections freeze nothing
        gc.collect(2)
        assert gc.get_freeze_count() > 0       # survivors of a full one are frozen
    finally:
        gc.callbacks[:] = before
        gc.unfreeze()
