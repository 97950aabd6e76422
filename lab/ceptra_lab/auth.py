"""Identity and roles for the lab: bearer tokens and SPIFFE URI SANs from mutual TLS.

Roles, weakest first: ingest < observer < operator < admin; each role has the rights of
every weaker role. Missing or unknown identity -> 401, known identity lacking the role -> 403.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

ROLES = ("ingest", "observer", "operator", "admin")
ROLE_RANK = {name: rank for rank, name in enumerate(ROLES)}
TRUST_DOMAIN = "ceptra.lab"
SPIFFE_PREFIX = "spiffe://"


@dataclass(frozen=True)
class Identity:
    """A caller: `actor` is the full SPIFFE URI (or the token's identity), `role` its role."""

    actor: str
    role: str

    def has(self, required: str) -> bool:
        """True when this identity's role is at least `required`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[required]


class AuthError(Exception):
    """Raised with .status 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def demo_tokens() -> dict[str, Identity]:
    """The demo tokens used when no --tokens file is given: lab-<role> for each role."""
    return {f"lab-{role}": Identity(f"{SPIFFE_PREFIX}{TRUST_DOMAIN}/role/{role}", role) for role in ROLES}


def load_tokens(path: str) -> dict[str, Identity]:
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
        if role not in ROLE_RANK:
            raise ValueError(f"tokens file {path}: entry {position} has role {role!r}; use one of {', '.join(ROLES)}")
        actor = entry.get("identity") or f"{SPIFFE_PREFIX}{TRUST_DOMAIN}/role/{role}"
        table[entry["token"]] = Identity(str(actor), role)
    return table


def role_from_spiffe(uri: str) -> str | None:
    """Map a SPIFFE URI whose path is /role/<role> (any trust domain) to the role, else None."""
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    rest = uri[len(SPIFFE_PREFIX):]
    _, _, path = rest.partition("/")
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "role" and parts[1] in ROLE_RANK:
        return parts[1]
    return None


def identity_from_peercert(peercert: dict | None) -> Identity | None:
    """The identity carried by a verified client certificate's URI SAN, or None."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI":
            role = role_from_spiffe(value)
            if role:
                return Identity(value, role)
    return None


class Authenticator:
    """Resolves a request's identity from its TLS peer certificate or Authorization header."""

    def __init__(self, tokens: dict[str, Identity]):
        self.tokens = tokens

    def identify(self, authorization: str | None, peercert: dict | None) -> Identity:
        """Return the caller's identity or raise AuthError(401)."""
        from_cert = identity_from_peercert(peercert)
        if from_cert is not None:
            return from_cert
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip() in self.tokens:
                return self.tokens[token.strip()]
            raise AuthError(401, "unknown bearer token: send 'Authorization: Bearer <token>' with a configured token")
        if peercert:
            raise AuthError(401, "client certificate carries no spiffe://<domain>/role/<role> URI SAN")
        raise AuthError(401, "authentication required: send a bearer token or a client certificate")

    @staticmethod
    def require(identity: Identity, role: str) -> None:
        """Raise AuthError(403) unless the identity has at least `role`."""
        if not identity.has(role):
            raise AuthError(403, f"identity {identity.actor} has role {identity.role}; this call needs {role}")
