"""Identity and roles: mutual TLS with the generated certificates, bearer tokens, 401/403 everywhere.

Roles are capability sets (contract section 1, spec §22.1): observer reads only, ingest
appends only, operator = observer + ingest + control-plane writes, admin = everything. The
SPIFFE trust domain is configured (a SAN in another domain is unknown: 401) and the server
speaks TLS 1.3 only.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from ceptra_lab.certs import write_certs
from ceptra_lab.testing import LabProcess, sample_event


FOREIGN_ADMIN = "spiffe://evil.example/role/admin"


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("certs"))
    # same CA, identities the lab must not accept: another trust domain, a path that names no role
    write_certs(directory, extra_clients={"foreign-admin": FOREIGN_ADMIN, "no-role": "spiffe://ceptra.lab/ns/x/sa/y"})
    with LabProcess(partitions=2, test_mode=True, tls_dir=directory) as lab:
        yield lab


def lab_state(lab):
    """What a refused request must leave alone: commit indexes, config version, audit length."""
    state = lab.request("GET", "/v1/state", role="admin")[2]
    audit = lab.request("GET", "/v1/audit", role="admin")[2]["records"]
    return [p["commit_index"] for p in state["partitions"]], state["cluster"]["config_version"], len(audit)


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


# One call per capability; the expected answer of each role is the contract's table, written out.
CAPABILITY_CALLS = {
    "read": ("GET", "/v1/state", None, 200),
    "append": ("POST", "/append", "event", 200),
    "control": ("POST", "/v1/audit", {"kind": "role_matrix", "details": {}}, 201),
    "test_hooks": ("POST", "/v1/test/faults", {"replication_lag_ms": 0}, 200),
}
CONTRACT_ROLES = {
    "observer": {"read"},
    "ingest": {"append"},
    "operator": {"read", "append", "control"},
    "admin": {"read", "append", "control", "test_hooks"},
}
MATRIX = [(role, capability) for role in CONTRACT_ROLES for capability in CAPABILITY_CALLS]


def call_as(lab, role, capability, event_id):
    method, path, body, _ = CAPABILITY_CALLS[capability]
    body = sample_event(event_id, part_id="0") if body == "event" else body
    return lab.request(method, path, body, role=role)


@pytest.mark.parametrize("role,capability", MATRIX)
def test_role_matrix_over_mutual_tls(tls_lab, role, capability):
    before = lab_state(tls_lab)
    status, _, body = call_as(tls_lab, role, capability, f"tls-{role}-{capability}")
    if capability in CONTRACT_ROLES[role]:
        assert status == CAPABILITY_CALLS[capability][3], body
    else:
        assert status == 403 and body["status"] == 403, body
        assert body["capability"] == capability and role not in body["allowed_roles"]
        assert lab_state(tls_lab) == before                    # refused: nothing changed


@pytest.mark.parametrize("role,capability", MATRIX)
def test_role_matrix_over_bearer_tokens(lab, role, capability):
    status, _, body = call_as(lab, role, capability, f"tok-{role}-{capability}")
    expected = CAPABILITY_CALLS[capability][3] if capability in CONTRACT_ROLES[role] else 403
    assert status == expected, body


def test_observer_cannot_append_by_any_route(tls_lab, lab):
    events = b'{"event_id": "obs-1", "partition_key": "k", "ts_ns": 1, "schema_key": "s", "payload": {}}\n'
    for target in (tls_lab, lab):
        before = lab_state(target)
        status, _, body = target.request("POST", "/append", sample_event("obs-2", part_id="1"), role="observer")
        assert status == 403 and "cannot append events" in body["error"] and body["required_role"] == "ingest"
        status, _, body = target.request("POST", "/v1/partitions/1/append-stream", data=events, role="observer",
                                         headers={"Content-Type": "application/x-ndjson"})
        assert status == 403
        assert lab_state(target) == before


def test_certificate_in_a_foreign_trust_domain_is_401(tls_lab):
    before = lab_state(tls_lab)
    for method, path, body in (("GET", "/v1/state", None), ("POST", "/v1/test/faults", {"http_503_ratio": 1.0}),
                               ("POST", "/append", sample_event("foreign-1", part_id="0"))):
        status, _, answer = tls_lab.request(method, path, body, role="foreign-admin")
        assert status == 401 and answer["status"] == 401, answer
        assert FOREIGN_ADMIN in answer["error"] and "ceptra.lab" in answer["error"]
    status, _, answer = tls_lab.request("GET", "/v1/state", role="no-role")
    assert status == 401 and "spiffe://ceptra.lab/role/<role>" in answer["error"]
    assert lab_state(tls_lab) == before
    assert tls_lab.request("GET", "/healthz", role="foreign-admin")[0] == 200   # needs no identity


def test_trust_domain_option(tmp_path):
    corp = str(tmp_path / "corp")
    write_certs(corp, trust_domain="corp.example", extra_clients={"lab-domain-admin": "spiffe://ceptra.lab/role/admin"})
    with LabProcess(partitions=1, tls_dir=corp, extra_args=["--trust-domain", "corp.example"]) as lab:
        status, _, body = lab.request("PATCH", "/v1/config", {"annotations": {"a": 1}}, role="operator")
        assert status == 200, body
        audit = lab.request("GET", "/v1/audit?kind=config_change", role="observer")[2]["records"]
        assert audit[-1]["actor"] == "spiffe://corp.example/role/operator"
        # the default domain's identity is foreign here, although the same CA signed it
        status, _, body = lab.request("GET", "/v1/state", role="lab-domain-admin")
        assert status == 401 and "corp.example" in body["error"]


def tls_context(lab, role, maximum=None):
    context = ssl.create_default_context(cafile=f"{lab.tls_dir}/ca.pem")
    context.load_cert_chain(f"{lab.tls_dir}/{role}.pem", f"{lab.tls_dir}/{role}-key.pem")
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = maximum
    return context


def test_tls_1_2_client_is_refused(tls_lab):
    with urllib.request.urlopen(tls_lab.url + "/v1/state", context=tls_context(tls_lab, "operator"), timeout=10) as ok:
        assert ok.status == 200                           # the same certificate over TLS 1.3
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)) as info:
        with urllib.request.urlopen(tls_lab.url + "/v1/state", timeout=10,
                                    context=tls_context(tls_lab, "operator", ssl.TLSVersion.TLSv1_2)) as response:
            response.read()
    assert "version" in str(info.value).lower() or "protocol" in str(info.value).lower(), info.value


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
    status, _, body = lab.request("POST", "/v1/activate", {"bundle_id": "x"}, role="ingest")
    assert status == 403 and body["required_role"] == "operator"


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
