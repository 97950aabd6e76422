"""Identity and roles for the lab: bearer tokens and SPIFFE URI SANs from mutual TLS.

Roles are capability sets (spec §22.1, contract section 1), not a ladder:

| role       | capabilities                                   |
| ---------- | ---------------------------------------------- |
| `observer` | `read` (probes, telemetry, state, audit, snapshots) |
| `ingest`   | `append` (events only)                         |
| `operator` | `read`, `append`, `control` (control-plane writes) |
| `admin`    | everything, also `test_hooks` (fault hooks)    |

A handler names the one capability it needs (``http_common.requires``). Missing or unknown
identity -> 401; a known identity whose role lacks the capability -> 403. A certificate's
SPIFFE URI must be in the configured trust domain; one from another trust domain is an
unknown identity (401) even when the trusted CA signed it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

ROLES = ("ingest", "observer", "operator", "admin")
CAPABILITIES = {
    "read": "read probes, telemetry, state, config, definitions, audit and snapshots",
    "append": "append events",
    "control": "write the control plane (config, bundles, activation, replay jobs, audit records)",
    "test_hooks": "use the test-mode fault hooks",
}
ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    "observer": frozenset({"read"}),
    "ingest": frozenset({"append"}),
    "operator": frozenset({"read", "append", "control"}),
    "admin": frozenset(CAPABILITIES),
}
TRUST_DOMAIN = "ceptra.lab"      # the trust domain of `ceptra-lab certs` and the demo tokens
SPIFFE_PREFIX = "spiffe://"


def roles_with(capability: str) -> list[str]:
    """The roles that grant a capability, in ROLES order."""
    return [role for role in ROLES if capability in ROLE_CAPABILITIES[role]]


@dataclass(frozen=True)
class Identity:
    """A caller: `actor` is the full SPIFFE URI (or the token's identity), `role` its role."""

    actor: str
    role: str

    def can(self, capability: str) -> bool:
        """True when this identity's role grants `capability`."""
        return capability in ROLE_CAPABILITIES[self.role]


class AuthError(Exception):
    """Raised with .status 401 (who are you?) or 403 (not allowed); .details go into the error body."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def check_trust_domain(domain: str) -> str:
    """A SPIFFE trust domain name (lower-case letters, digits, '.', '-', '_'); ValueError otherwise."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")
    if not domain or set(domain) - allowed:
        raise ValueError(f"trust domain {domain!r} is not valid: use lower-case letters, digits, '.', '-' and '_' "
                         "(e.g. ceptra.lab)")
    return domain


def role_identity(role: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The SPIFFE identity the lab gives a role: spiffe://<trust domain>/role/<role>."""
    return f"{SPIFFE_PREFIX}{trust_domain}/role/{role}"


def demo_tokens(trust_domain: str = TRUST_DOMAIN) -> dict[str, Identity]:
    """The demo tokens used when no --tokens file is given: lab-<role> for each role."""
    return {f"lab-{role}": Identity(role_identity(role, trust_domain), role) for role in ROLES}


def load_tokens(path: str, trust_domain: str = TRUST_DOMAIN) -> dict[str, Identity]:
    """Read a tokens file `{"tokens": [{"token", "role", "identity"?}]}`; ValueError when malformed."""
    try:
        with open(path, "rb") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read tokens file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"tokens file {path} is not valid JSON: {exc}") from exc
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"tokens file {path} must be an object with a 'tokens' list")
    table: dict[str, Identity] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str) or not entry["token"]:
            raise ValueError(f"tokens file {path}: entry {position} needs a non-empty string 'token'")
        role = entry.get("role")
        if role not in ROLE_CAPABILITIES:
            raise ValueError(f"tokens file {path}: entry {position} has role {role!r}; use one of {', '.join(ROLES)}")
        actor = entry.get("identity") or role_identity(role, trust_domain)
        table[entry["token"]] = Identity(str(actor), role)
    return table


def split_spiffe(uri: str) -> tuple[str, str] | None:
    """(trust domain, path) of a spiffe:// URI, or None when it is not one."""
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    domain, _, path = uri[len(SPIFFE_PREFIX):].partition("/")
    return domain, "/" + path


def role_from_spiffe(uri: str, trust_domain: str = TRUST_DOMAIN) -> str | None:
    """The role of spiffe://<trust_domain>/role/<role>, else None (other domain, path or role)."""
    parts = split_spiffe(uri)
    if parts is None or parts[0] != trust_domain:
        return None
    segments = parts[1].strip("/").split("/")
    if len(segments) == 2 and segments[0] == "role" and segments[1] in ROLE_CAPABILITIES:
        return segments[1]
    return None


def certificate_uris(peercert: dict | None) -> list[str]:
    """The URI SANs of a verified client certificate."""
    return [value for kind, value in (peercert or {}).get("subjectAltName", ()) if kind == "URI"]


def identity_from_peercert(peercert: dict | None, trust_domain: str = TRUST_DOMAIN) -> Identity | None:
    """The identity carried by a verified client certificate's URI SAN in the trust domain, or None."""
    for uri in certificate_uris(peercert):
        role = role_from_spiffe(uri, trust_domain)
        if role:
            return Identity(uri, role)
    return None


class Authenticator:
    """Resolves a request's identity from its TLS peer certificate or Authorization header."""

    def __init__(self, tokens: dict[str, Identity], trust_domain: str = TRUST_DOMAIN):
        self.tokens = tokens
        self.trust_domain = trust_domain

    def identify(self, authorization: str | None, peercert: dict | None) -> Identity:
        """Return the caller's identity or raise AuthError(401)."""
        from_cert = identity_from_peercert(peercert, self.trust_domain)
        if from_cert is not None:
            return from_cert
        foreign = [uri for uri in certificate_uris(peercert)
                   if split_spiffe(uri) is not None and split_spiffe(uri)[0] != self.trust_domain]
        if foreign:
            # signed by the trusted CA, but named in a trust domain this cluster does not own
            raise AuthError(401, f"client certificate identity {foreign[0]} is outside trust domain "
                                 f"{self.trust_domain!r}; use a certificate with spiffe://{self.trust_domain}/role/<role>")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip() in self.tokens:
                return self.tokens[token.strip()]
            raise AuthError(401, "unknown bearer token: send 'Authorization: Bearer <token>' with a configured token")
        if peercert:
            raise AuthError(401, f"client certificate carries no spiffe://{self.trust_domain}/role/<role> URI SAN")
        raise AuthError(401, "authentication required: send a bearer token or a client certificate")

    @staticmethod
    def require(identity: Identity, capability: str) -> None:
        """Raise AuthError(403) unless the identity's role grants `capability`."""
        if not identity.can(capability):
            allowed = roles_with(capability)
            raise AuthError(403, f"identity {identity.actor} has role {identity.role}, which cannot "
                                 f"{CAPABILITIES[capability]}; this call needs role {' or '.join(allowed)}",
                            required_role=allowed[0], capability=capability, allowed_roles=allowed)
