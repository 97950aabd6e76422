"""Transport of the shared client against a real lab, driven through ansible-playbook.

Mutual TLS with `ceptra-lab certs` certificates, verification on by default, a clear
permission error for an observer identity, a 503 storm retried then reported, 4xx never
retried, and no secret (token value, key file contents) in -vvv output. The tasks are the
transport_* targets under targets/ (run_target.yml runs them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    """A 2-partition lab serving HTTPS with mutual TLS, and its certificate directory."""
    from ceptra_lab.testing import LabProcess

    certs = str(tmp_path_factory.mktemp("lab-certs"))
    subprocess.run([sys.executable, "-m", "ceptra_lab", "certs", certs], check=True, capture_output=True)
    with LabProcess(partitions=2, tls_dir=certs) as running:
        yield running


def tls_vars(lab, role, ca=True):
    """The connection of ``role`` to the TLS lab: its certificate and key, and the CA (unless not ``ca``)."""
    certs = lab.tls_dir
    out = {"ceptra_url": lab.url, "ceptra_client_cert": os.path.join(certs, "%s.pem" % role),
           "ceptra_client_key": os.path.join(certs, "%s-key.pem" % role)}
    if ca:
        out["ceptra_ca_path"] = os.path.join(certs, "ca.pem")
    return out


def test_mutual_tls_operator(tls_lab, run_target):
    assert tls_lab.url.startswith("https://")
    result = run_target("transport_mtls", tls_vars(tls_lab, "operator"))
    assert result.rc == 0, result.stdout + result.stderr
    assert result.results["state"]["partition_ids"] == ["0", "1"]
    assert result.results["write"]["record"]["actor"] == "spiffe://ceptra.lab/role/operator"


def test_certificate_verification_is_on_by_default(tls_lab, run_target):
    result = run_target("transport_verification", tls_vars(tls_lab, "operator", ca=False))
    assert result.rc == 0, result.stdout + result.stderr
    failed = result.results["verified by default"]
    assert result.status("verified by default") == "failed"
    assert "TLS certificate verification failed" in failed["msg"] and "ca_path" in failed["msg"]
    # switching verification off (a throwaway lab only) gets through
    assert result.results["verification off"]["partition_ids"] == ["0", "1"]


def test_observer_certificate_gets_a_clear_permission_error_once(tls_lab, run_target):
    variables = tls_vars(tls_lab, "observer")
    result = run_target("transport_mtls", variables, verbosity=3)
    assert result.rc != 0
    assert result.status("state") == "ok"  # reading is allowed for observer
    failed = result.results["write"]
    assert failed["status"] == 403
    assert failed["attempts"] == 1  # 4xx is never retried
    assert ("the identity spiffe://ceptra.lab/role/observer lacks role operator; use an operator certificate or token"
            in failed["msg"].lower())
    # -vvv prints module arguments and results: the key file's contents must not be among them
    with open(variables["ceptra_client_key"]) as fh:
        key_lines = [line for line in fh.read().splitlines() if line and not line.startswith("-----")]
    output = result.stdout + result.stderr
    assert "lacks role operator" in output
    for line in key_lines:
        assert line not in output


def test_503_storm_is_retried_then_reported(lab, lab_vars, run_target):
    admin = CeptraClient(lab.url, token=lab.tokens["admin"])
    admin.request("POST", "test_faults", body={"http_503_ratio": 1.0})
    try:
        result = run_target("transport_retries", dict(lab_vars, retries=3))
        assert result.rc != 0
        failed = result.results["state"]
        assert failed["status"] == 503 and failed["attempts"] == 4
        assert "GET /v1/state failed with 503: injected fault" in failed["msg"]
        assert "gave up after 4 attempts" in failed["msg"]
        # a partial storm is ridden out by the retries (0.3 ** 13 makes a failure negligible)
        admin.request("POST", "test_faults", body={"http_503_ratio": 0.3})
        result = run_target("transport_retries", dict(lab_vars, retries=12))
        assert result.rc == 0, result.stdout + result.stderr
        assert result.results["state"]["partition_ids"] == ["0", "1", "2", "3"]
    finally:
        admin.request("POST", "test_faults", body={"http_503_ratio": 0.0})


def test_no_token_in_verbose_output(lab_factory, run_target):
    secret = "tok-" + uuid.uuid4().hex
    observer_secret = "obs-" + uuid.uuid4().hex
    secret_lab = lab_factory(partitions=2, tokens={"operator": secret, "observer": observer_secret,
                                                   "admin": "adm-" + uuid.uuid4().hex})
    result = run_target("transport_secrets", {"ceptra_url": secret_lab.url, "secret_token": secret},
                        verbosity=3, env={"CEPTRA_TOKEN": observer_secret})
    assert result.rc == 0, result.stdout + result.stderr
    assert result.results["from an option"]["changed"] is True
    assert "lacks role operator" in result.results["from the environment, failing"]["msg"]
    assert result.results["bad token"]["status"] == 401
    output = result.stdout + result.stderr
    assert secret not in output and observer_secret not in output


def test_missing_client_certificate_is_explained(tls_lab, run_target):
    connection = tls_vars(tls_lab, "operator")
    result = run_target("transport_missing_client_cert", {"ceptra_url": tls_lab.url,
                                                          "ceptra_ca_path": connection["ceptra_ca_path"]})
    assert result.rc != 0
    assert "set client_cert and client_key" in result.results["state"]["msg"]
