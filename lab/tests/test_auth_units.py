"""Unit tests of identity mapping."""
from __future__ import annotations

import pytest

from ceptra_lab.auth import AuthError, Authenticator, Identity, demo_tokens, identity_from_peercert, role_from_spiffe


def test_spiffe_uri_maps_to_role():
    assert role_from_spiffe("spiffe://ceptra.lab/role/operator") == "operator"
    assert role_from_spiffe("spiffe://corp.example/role/admin") == "admin"
    assert role_from_spiffe("spiffe://ceptra.lab/role/root") is None
    assert role_from_spiffe("spiffe://ceptra.lab/ns/default/sa/x") is None
    assert role_from_spiffe("https://ceptra.lab/role/admin") is None


def test_peercert_and_tokens():
    cert = {"subjectAltName": (("DNS", "x"), ("URI", "spiffe://ceptra.lab/role/observer"))}
    assert identity_from_peercert(cert) == Identity("spiffe://ceptra.lab/role/observer", "observer")
    auth = Authenticator(demo_tokens())
    assert auth.identify(None, cert).role == "observer"                  # the certificate wins
    assert auth.identify("Bearer lab-admin", None).role == "admin"
    for header, peer in ((None, None), ("Bearer nope", None), ("Token lab-admin", None), (None, {"subjectAltName": ()})):
        with pytest.raises(AuthError) as info:
            auth.identify(header, peer)
        assert info.value.status == 401
    with pytest.raises(AuthError) as info:
        Authenticator.require(Identity("x", "observer"), "operator")
    assert info.value.status == 403
    Authenticator.require(Identity("x", "admin"), "ingest")
