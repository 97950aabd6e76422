"""Identity and roles: mutual TLS with the generated certificates, bearer tokens, 401/403 everywhere."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from ceptra_lab.certs import write_certs
from ceptra_lab.testing import LabProcess, sample_event


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("certs"))
    write_certs(directory)
    with LabProcess(partitions=2, test_mode=True, tls_dir=directory) as lab:
        yield lab


def test_tls_lab_prints_https_url(tls_lab):
    assert tls_lab.url.startswith("https://127.0.0.1:")
    assert not any(line.startswith("demo token") for line in tls_lab.output)


def test_observer_reads_but_cannot_patch_config(tls_lab):
    assert tls_lab.request("GET", "/v1/state", role="observer")[0] == 200
    status, _, body = tls_lab.request("PATCH", "/v1/config", {"pane_size_ms": 500}, role="observer")
    assert status == 403 and body["status"] == 403 and "operator" in body["error"]
    assert tls_lab.request("GET", "/v1/config", role="observer")[2]["config"]["pane_size_ms"] == 250


def test_operator_patch_is_audited_with_spiffe_actor(tls_lab):
    status, _, body = tls_lab.request("PATCH", "/v1/config", {"annotations": {"tls": "yes"}}, role="operator")
    assert status == 200
    _, _, audit = tls_lab.request("GET", "/v1/audit?kind=config_change", role="observer")
    assert audit["records"][-1]["actor"] == "spiffe://ceptra.lab/role/operator"


@pytest.mark.parametrize("role,method,path,body,expected", [
    ("ingest", "GET", "/v1/state", None, 403),
    ("ingest", "POST", "/append", sample_event("tls-1", part_id="0"), 200),
    ("observer", "POST", "/append", sample_event("tls-2", part_id="0"), 200),
    ("observer", "GET", "/metrics", None, 200),
    ("observer", "POST", "/v1/audit", {"kind": "x", "details": {}}, 403),
    ("operator", "POST", "/v1/audit", {"kind": "x", "details": {}}, 201),
    ("operator", "POST", "/v1/test/faults", {"replication_lag_ms": 0}, 403),
    ("admin", "POST", "/v1/test/faults", {"replication_lag_ms": 0}, 200),
    ("operator", "POST", "/v1/replay", {"part_ids": ["0"]}, 200),
    ("observer", "POST", "/v1/replay", {"part_ids": ["0"]}, 403),
])
def test_role_matrix_over_mutual_tls(tls_lab, role, method, path, body, expected):
    assert tls_lab.request(method, path, body, role=role)[0] == expected


def test_no_client_certificate_is_refused(tls_lab):
    context = ssl.create_default_context(cafile=f"{tls_lab.tls_dir}/ca.pem")
    request = urllib.request.Request(tls_lab.url + "/v1/state", headers={"Authorization": "Bearer lab-admin"})
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            response.read()


def test_certificate_from_another_ca_is_refused(tls_lab, tmp_path):
    write_certs(str(tmp_path))
    context = ssl.create_default_context(cafile=f"{tls_lab.tls_dir}/ca.pem")
    context.load_cert_chain(str(tmp_path / "admin.pem"), str(tmp_path / "admin-key.pem"))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        with urllib.request.urlopen(tls_lab.url + "/v1/state", context=context, timeout=10) as response:
            response.read()


def test_missing_and_unknown_tokens_are_401(lab):
    status, _, body = lab.request("GET", "/v1/state", role=None)
    assert status == 401 and body["status"] == 401
    status, _, body = lab.request("GET", "/v1/state", role=None, headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, _, body = lab.request("GET", "/readyz", role=None, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert status == 401
    assert lab.request("POST", "/v1/activate", {"bundle_id": "x"}, role="ingest")[0] == 403


def test_tokens_file_replaces_demo_tokens(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"token": "s3cret-op", "role": "operator", "identity": "spiffe://corp/ops/alice"},
                                           {"token": "s3cret-obs", "role": "observer"}]}))
    with LabProcess(partitions=1, tokens=str(path)) as lab:
        assert not any(line.startswith("demo token") for line in lab.output)
        assert lab.request("GET", "/v1/state", role=None, headers={"Authorization": "Bearer lab-admin"})[0] == 401
        assert lab.request("PATCH", "/v1/config", {"annotations": {"a": 1}}, role="operator")[0] == 200
        assert lab.request("PATCH", "/v1/config", {"annotations": {"a": 2}}, role="observer")[0] == 403
        records = lab.request("GET", "/v1/audit", role="operator")[2]["records"]
        assert records[-1]["actor"] == "spiffe://corp/ops/alice"
