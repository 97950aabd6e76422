"""Test PKI for mutual TLS: a CA, a server certificate and one client certificate per role.

Client certificates carry the URI SAN `spiffe://<trust domain>/role/<role>` (default trust
domain `ceptra.lab`, the serve command's default too), which the lab maps to the role. Keys are
ECDSA P-256 (fast to generate); validity 30 days. Both sides speak TLS 1.3 only (contract
section 1).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ceptra_lab.auth import ROLES, TRUST_DOMAIN, role_identity

VALIDITY = datetime.timedelta(days=30)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes, private: bool = False) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
    if private:
        os.chmod(path, 0o600)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


def write_certs(directory: str, roles=ROLES, trust_domain: str = TRUST_DOMAIN,
                extra_clients: dict[str, str] | None = None) -> dict:
    """Write ca.pem, server.pem/server-key.pem and <role>.pem/<role>-key.pem; returns the paths.

    ``extra_clients`` maps a file name to a URI SAN: more client certificates from the same
    CA (tests use it for identities outside the trust domain).
    """
    os.makedirs(directory, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ceptra-lab test CA")])
    ca_cert = (_builder("ceptra-lab test CA", ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    paths = {"ca": os.path.join(directory, "ca.pem")}
    _write(paths["ca"], ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(name: str, subject: str, san: list, usage) -> None:
        key = _key()
        cert = (_builder(subject, ca_name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        paths[name] = os.path.join(directory, f"{name}.pem")
        paths[f"{name}-key"] = os.path.join(directory, f"{name}-key.pem")
        _write(paths[name], cert.public_bytes(serialization.Encoding.PEM))
        _write(paths[f"{name}-key"], _pem_key(key), private=True)

    issue("server", "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
          ExtendedKeyUsageOID.SERVER_AUTH)
    for role in roles:
        issue(role, f"ceptra-lab {role}", [x509.UniformResourceIdentifier(role_identity(role, trust_domain))],
              ExtendedKeyUsageOID.CLIENT_AUTH)
    for name, uri in (extra_clients or {}).items():
        issue(name, f"ceptra-lab {name}", [x509.UniformResourceIdentifier(uri)], ExtendedKeyUsageOID.CLIENT_AUTH)
    return paths


def server_ssl_context(directory: str) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by the lab CA, TLS 1.3 only."""
    for name in ("ca.pem", "server.pem", "server-key.pem"):
        if not os.path.exists(os.path.join(directory, name)):
            raise ValueError(f"--tls-dir {directory} has no {name}; create it with: ceptra-lab certs {directory}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=os.path.join(directory, "ca.pem"))
    context.load_cert_chain(os.path.join(directory, "server.pem"), os.path.join(directory, "server-key.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def client_ssl_context(directory: str, role: str | None) -> ssl.SSLContext:
    """A client context trusting the lab CA, presenting the role's certificate (None: no certificate)."""
    context = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if role:
        context.load_cert_chain(os.path.join(directory, f"{role}.pem"), os.path.join(directory, f"{role}-key.pem"))
    return context
