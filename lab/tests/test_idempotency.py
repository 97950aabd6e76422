"""Idempotency-Key: scoped to the caller's identity, method and path; a changed request is 422.

Contract section 1: a repeat by the same identity, method, path and body within 600 s
returns the first response without acting again; the same key with a different body from
the same caller -> 422.
"""
from __future__ import annotations

import json

import pytest

from ceptra_lab.testing import LabProcess


@pytest.fixture
def two_admins(tmp_path):
    """A lab whose tokens file has two operators and an admin with distinct identities."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [
        {"token": "t-admin", "role": "admin", "identity": "spiffe://ceptra.lab/people/ada"},
        {"token": "t-op-1", "role": "operator", "identity": "spiffe://ceptra.lab/people/olga"},
        {"token": "t-op-2", "role": "operator", "identity": "spiffe://ceptra.lab/people/otto"}]}))
    with LabProcess(partitions=1, tokens=str(path)) as lab:
        yield lab


def call(lab, token, method, path, body=None, key=None):
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return lab.request(method, path, body, role=None, headers=headers)


def audit(lab):
    return call(lab, "t-admin", "GET", "/v1/audit")[2]["records"]


def test_another_identity_reusing_a_key_acts_on_its_own(two_admins):
    lab = two_admins
    status, headers, first = call(lab, "t-admin", "POST", "/v1/audit", {"kind": "note", "details": {"n": 1}}, key="k-1")
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, headers, second = call(lab, "t-op-1", "POST", "/v1/audit", {"kind": "note", "details": {"n": 1}}, key="k-1")
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert second["id"] != first["id"] and second["actor"] == "spiffe://ceptra.lab/people/olga"
    # the operator's own write happened; the admin's record was not handed to the operator
    assert [r["actor"] for r in audit(lab) if r["kind"] == "note"] == [
        "spiffe://ceptra.lab/people/ada", "spiffe://ceptra.lab/people/olga"]
    # each caller's repeat is answered from its own first response
    status, headers, again = call(lab, "t-op-1", "POST", "/v1/audit", {"kind": "note", "details": {"n": 1}}, key="k-1")
    assert status == 201 and headers["Idempotent-Replayed"] == "true" and again == second
    assert len([r for r in audit(lab) if r["kind"] == "note"]) == 2


def test_config_writes_of_two_operators_with_one_key(two_admins):
    lab = two_admins
    status, _, first = call(lab, "t-op-1", "PATCH", "/v1/config", {"annotations": {"who": "olga"}}, key="shared")
    assert status == 200 and first["changed_keys"] == ["annotations.who"]
    status, headers, second = call(lab, "t-op-2", "PATCH", "/v1/config", {"annotations": {"who": "otto"}}, key="shared")
    assert status == 200 and "Idempotent-Replayed" not in headers and second["version"] == first["version"] + 1
    config = call(lab, "t-admin", "GET", "/v1/config")[2]["config"]
    assert config["annotations"]["who"] == "otto"


def test_same_caller_different_body_is_422_naming_the_key(two_admins):
    lab = two_admins
    status, _, first = call(lab, "t-op-1", "PATCH", "/v1/config", {"pane_size_ms": 500}, key="k-body")
    assert status == 200
    config_before, audit_before = call(lab, "t-admin", "GET", "/v1/config")[2], len(audit(lab))
    status, headers, body = call(lab, "t-op-1", "PATCH", "/v1/config", {"pane_size_ms": 750}, key="k-body")
    assert status == 422 and body["status"] == 422 and body["idempotency_key"] == "k-body"
    assert "'k-body'" in body["error"] and body["violations"][0]["path"] == "Idempotency-Key"
    assert "Idempotent-Replayed" not in headers
    assert call(lab, "t-admin", "GET", "/v1/config")[2] == config_before and len(audit(lab)) == audit_before
    # the original request with that key still replays its first answer
    status, headers, again = call(lab, "t-op-1", "PATCH", "/v1/config", {"pane_size_ms": 500}, key="k-body")
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and again == first


def test_same_caller_different_query_is_422(two_admins):
    lab = two_admins
    for value in (500, 600):
        assert call(lab, "t-op-1", "PATCH", "/v1/config", {"pane_size_ms": value})[0] == 200
    version = call(lab, "t-admin", "GET", "/v1/config")[2]["version"]
    status, _, first = call(lab, "t-op-1", "POST", f"/v1/config/rollback?to={version - 1}", key="k-rb")
    assert status == 200
    status, _, body = call(lab, "t-op-1", "POST", f"/v1/config/rollback?to={version - 2}", key="k-rb")
    assert status == 422 and body["idempotency_key"] == "k-rb"
    assert call(lab, "t-admin", "GET", "/v1/config")[2]["version"] == first["version"]


def test_same_key_on_another_path_is_another_request(two_admins):
    lab = two_admins
    assert call(lab, "t-op-1", "POST", "/v1/audit", {"kind": "a", "details": {}}, key="k-path")[0] == 201
    status, headers, body = call(lab, "t-op-1", "PATCH", "/v1/config", {"annotations": {"p": 1}}, key="k-path")
    assert status == 200 and "Idempotent-Replayed" not in headers and body["changed_keys"] == ["annotations.p"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "tab\tkey"])
def test_malformed_key_is_400_and_nothing_happens(two_admins, key):
    lab = two_admins
    before = len(audit(lab))
    status, _, body = lab.request("POST", "/v1/audit", {"kind": "k", "details": {}}, role=None,
                                  headers={"Authorization": "Bearer t-op-1", "Idempotency-Key": key})
    assert status == 400 and "Idempotency-Key" in body["error"], body
    assert len(audit(lab)) == before
