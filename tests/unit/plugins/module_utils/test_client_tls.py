"""TLS behaviour of the shared client: verification on by default, CA bundles, mutual TLS."""

from __future__ import annotations

import os

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, CeptraError

from ..test_support.http_server import FakeServer, Reply, server_tls_context, write_test_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_test_pki(str(tmp_path_factory.mktemp("pki")))


def serve(pki, cert="server", require_client_cert=False):
    srv = FakeServer(ssl_context=server_tls_context(pki, cert, require_client_cert))
    srv.on("GET", "/healthz", Reply(200, {"ok": True}))
    return srv


def test_self_signed_server_is_refused_by_default(pki):
    srv = serve(pki, cert="selfsigned")
    try:
        client = CeptraClient(srv.url, retries=3)
        assert client.validate_certs is True
        with pytest.raises(CeptraError) as info:
            client.get_json("healthz")
        message = info.value.message
        assert "certificate verification failed" in message
        assert "ca_path" in message
        assert info.value.attempts == 1  # a certificate problem is not transient
        assert srv.calls() == []
    finally:
        srv.close()


def test_ca_path_trusts_the_server_and_validate_certs_false_skips_checks(pki):
    srv = serve(pki)
    try:
        assert CeptraClient(srv.url, ca_path=os.path.join(pki, "ca.pem")).get_json("healthz") == {"ok": True}
        with pytest.raises(CeptraError):
            CeptraClient(srv.url).get_json("healthz")
        assert CeptraClient(srv.url, validate_certs=False).get_json("healthz") == {"ok": True}
    finally:
        srv.close()


def test_host_name_is_checked(pki):
    # Signed by the trusted CA, but for other.example, not 127.0.0.1.
    srv = serve(pki, cert="wronghost")
    try:
        with pytest.raises(CeptraError) as info:
            CeptraClient(srv.url, ca_path=os.path.join(pki, "ca.pem"), retries=0).get_json("healthz")
        assert "certificate verification failed" in info.value.message
        assert "mismatch" in info.value.message.lower()
        client = CeptraClient(srv.url, ca_path=os.path.join(pki, "ca.pem"), check_hostname=False)
        assert client.get_json("healthz") == {"ok": True}
    finally:
        srv.close()


def test_mutual_tls_presents_the_client_certificate(pki):
    srv = serve(pki, require_client_cert=True)
    try:
        client = CeptraClient(srv.url, ca_path=os.path.join(pki, "ca.pem"),
                              client_cert=os.path.join(pki, "client.pem"),
                              client_key=os.path.join(pki, "client-key.pem"))
        assert client.get_json("healthz") == {"ok": True}
        peer = srv.calls()[0].peer_cert
        assert ("URI", "spiffe://ceptra.lab/role/observer") in peer["subjectAltName"]
    finally:
        srv.close()


def test_403_hint_reads_the_identity_from_the_client_certificate(pki):
    srv = serve(pki, require_client_cert=True)
    srv.on("POST", "/v1/audit", Reply(403, {"error": "forbidden", "status": 403}))
    try:
        client = CeptraClient(srv.url, ca_path=os.path.join(pki, "ca.pem"),
                              client_cert=os.path.join(pki, "client.pem"),
                              client_key=os.path.join(pki, "client-key.pem"))
        with pytest.raises(CeptraError) as info:
            client.request("POST", "audit", body={"kind": "k", "details": {}})
        assert "identity spiffe://ceptra.lab/role/observer lacks role operator" in info.value.message
    finally:
        srv.close()


def test_mismatched_key_is_a_clear_error_without_key_contents(pki, tmp_path):
    key_path = os.path.join(pki, "server-key.pem")
    with open(key_path) as fh:
        key_text = fh.read()
    with pytest.raises(CeptraError) as info:
        CeptraClient("https://127.0.0.1:9", client_cert=os.path.join(pki, "client.pem"), client_key=key_path)
    assert "could not load the client certificate" in info.value.message
    body_line = key_text.splitlines()[1]
    assert body_line not in info.value.message
    missing = tmp_path / "nope.pem"
    with pytest.raises(CeptraError) as info:
        CeptraClient("https://127.0.0.1:9", client_cert=str(missing), client_key=key_path)
    assert "does not exist" in info.value.message


def test_bad_ca_path_is_a_clear_error(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(CeptraError) as info:
        CeptraClient("https://127.0.0.1:9", ca_path=str(bogus))
    assert "could not load the CA bundle" in info.value.message
