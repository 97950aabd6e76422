"""A tiny scripted HTTP(S) server in a thread, for the tests of the shared client's transport
(TLS, keep-alive, retries, headers) and of modules over a real socket; plus a throw-away PKI.

For tests of what a module or helper does with the cluster's answers, the in-memory
``control_plane.ControlPlane`` is simpler: it is the real client without the socket.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Recorded:
    """One request the server received."""

    def __init__(self, method, target, headers, body, client_port, peer_cert):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path
        self.query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self.client_port = client_port
        self.peer_cert = peer_cert

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Recorded(%s %s)" % (self.method, self.path)


class Reply:
    """A scripted answer."""

    def __init__(self, status=200, body=None, headers=None, raw=None, delay=0.0, close=False):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.raw = raw
        self.delay = delay
        self.close = close  # drop the socket after answering without saying so (stale keep-alive)

    def encode(self):
        if self.raw is not None:
            return self.raw if isinstance(self.raw, bytes) else self.raw.encode()
        if self.body is None:
            return b""
        self.headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode()


class FakeServer:
    """Scripted server: ``on(method, path, replies_or_callable)``; records every request."""

    def __init__(self, ssl_context=None):
        self.requests = []
        self._scripts = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                peer = None
                if hasattr(self.connection, "getpeercert"):
                    peer = self.connection.getpeercert()
                rec = Recorded(self.command, self.path, dict(self.headers), body, self.client_address[1], peer)
                with owner._lock:
                    owner.requests.append(rec)
                reply = owner._next_reply(rec)
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if reply.close:
                    self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.httpd.server_address[1])

    def on(self, method, path, replies):
        """Answer ``method path`` with a Reply, a list of Replies (last repeats) or a callable(rec) -> Reply."""
        if isinstance(replies, Reply):
            replies = [replies]
        self._scripts[(method, path)] = replies if callable(replies) else list(replies)

    def _next_reply(self, rec):
        script = self._scripts.get((rec.method, rec.path))
        if script is None:
            return Reply(404, {"error": "no route %s" % rec.path, "status": 404})
        if callable(script):
            return script(rec)
        with self._lock:
            return script.pop(0) if len(script) > 1 else script[0]

    def calls(self, method=None, path=None):
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_test_pki(directory):
    """Write ca.pem, server.pem/server-key.pem (SAN 127.0.0.1, localhost), client.pem/client-key.pem
    (URI SAN spiffe://ceptra.lab/role/observer), wronghost.pem (SAN other.example) and a self-signed selfsigned.pem/selfsigned-key.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def save(name, cert, private):
        with open(os.path.join(directory, name + ".pem"), "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.path.join(directory, name + "-key.pem"), "wb") as fh:
            fh.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def build(subject_cn, issuer_name, public, signer, sans, is_ca):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
                   .issuer_name(issuer_name)
                   .public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if is_ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = build("test ca", ca_name, ca_key.public_key(), ca_key, None, True)
    save("ca", ca, ca_key)
    server_key = key()
    server_sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    save("server", build("server", ca_name, server_key.public_key(), ca_key, server_sans, False), server_key)
    wrong_key = key()
    wrong_sans = [x509.DNSName("other.example")]
    save("wronghost", build("wronghost", ca_name, wrong_key.public_key(), ca_key, wrong_sans, False), wrong_key)
    client_key = key()
    client_sans = [x509.UniformResourceIdentifier("spiffe://ceptra.lab/role/observer")]
    save("client", build("observer", ca_name, client_key.public_key(), ca_key, client_sans, False), client_key)
    self_key = key()
    self_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfsigned")])
    save("selfsigned", build("selfsigned", self_name, self_key.public_key(), self_key, server_sans, True), self_key)
    return directory


def server_tls_context(pki, cert="server", require_client_cert=False):
    """A server-side SSL context from ``write_test_pki`` files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(pki, cert + ".pem"), os.path.join(pki, cert + "-key.pem"))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(os.path.join(pki, "ca.pem"))
    return context
