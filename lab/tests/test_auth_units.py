"""Unit tests of identity mapping: SPIFFE URIs in the trust domain, tokens, capability sets."""
from __future__ import annotations

import pytest

from ceptra_lab.auth import (
    AuthError,
    Authenticator,
    Identity,
    check_trust_domain,
    demo_tokens,
    identity_from_peercert,
    role_from_spiffe,
    roles_with,
)


def test_spiffe_uri_maps_to_role_in_the_trust_domain_only():
    assert role_from_spiffe("spiffe://ceptra.lab/role/operator") == "operator"
    assert role_from_spiffe("spiffe://corp.example/role/admin") is None                 # another trust domain
    assert role_from_spiffe("spiffe://corp.example/role/admin", "corp.example") == "admin"
    assert role_from_spiffe("spiffe://ceptra.lab/role/root") is None
    assert role_from_spiffe("spiffe://ceptra.lab/ns/default/sa/x") is None
    assert role_from_spiffe("https://ceptra.lab/role/admin") is None
    assert role_from_spiffe("spiffe://ceptra.lab.evil/role/admin") is None


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


def test_foreign_trust_domain_certificate_is_unknown_even_with_a_token():
    auth = Authenticator(demo_tokens())
    foreign = {"subjectAltName": (("URI", "spiffe://evil.example/role/admin"),)}
    with pytest.raises(AuthError) as info:
        auth.identify("Bearer lab-admin", foreign)
    assert info.value.status == 401 and "evil.example" in info.value.message


@pytest.mark.parametrize("role,allowed", [
    ("observer", {"read"}), ("ingest", {"append"}), ("operator", {"read", "append", "control"}),
    ("admin", {"read", "append", "control", "test_hooks"})])
def test_roles_are_capability_sets(role, allowed):
    identity = Identity(f"spiffe://ceptra.lab/role/{role}", role)
    for capability in ("read", "append", "control", "test_hooks"):
        if capability in allowed:
            Authenticator.require(identity, capability)
        else:
            with pytest.raises(AuthError) as info:
                Authenticator.require(identity, capability)
            assert info.value.status == 403 and info.value.details["capability"] == capability
            assert info.value.details["required_role"] == roles_with(capability)[0]


def test_requires_names_a_known_capability():
    from ceptra_lab.http_common import requires

    with pytest.raises(ValueError, match="unknown capability 'observer'"):
        requires("observer")


def test_trust_domain_names_are_checked():
    assert check_trust_domain("corp.example") == "corp.example"
    for bad in ("", "Corp.Example", "a/b", "spiffe://x"):
        with pytest.raises(ValueError):
            check_trust_domain(bad)
