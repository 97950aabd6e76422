# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the shared HTTP client (transport, identity, retries, errors).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal shared client of ceptra.backfill (not a public API).

Standard library only (``http.client`` + ``ssl``) and no AnsibleModule dependency, so the
replay command-line tool uses the same client as the modules.

- One persistent keep-alive connection per client and thread (a thread-local connection:
  worker threads may share one client object).
- TLS: certificates verified by default (``ca_path`` adds a CA bundle), mutual TLS with
  ``client_cert``/``client_key``, bearer token.
- Retries with full-jitter exponential backoff on connection errors and 429/502/503/504,
  honouring ``Retry-After``; never on any other status.
- ``Idempotency-Key`` on every write, one per logical call, reused across its retries.
- Contract error bodies become one readable message (``CeptraError.message``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import ssl
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urlsplit

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._routes import (
    RouteError,
    RouteTable,
    parse_routes_env,
)

# The defaults of the shared connection options (modules, the command line, snapshot_diff's
# second cluster); the doc fragment ceptra.backfill.connection documents the same values.
CONNECTION_DEFAULTS = {"validate_certs": True, "timeout": 30, "retries": 5}
RETRYABLE_STATUSES = frozenset((429, 502, 503, 504))
WRITE_METHODS = frozenset(("POST", "PATCH", "PUT", "DELETE"))
JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
# A server may ask for a long pause; we honour Retry-After up to this many seconds so a
# misconfigured gateway cannot park a play for hours.
RETRY_AFTER_CAP_S = 120.0
# Errors that mean "the connection broke", worth a retry (timeouts included: writes carry an
# Idempotency-Key, so repeating them is safe).
_CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError)


class Headers(dict):
    """Response headers with case-insensitive lookup (keys stored lower-case)."""

    def __init__(self, items=()):
        super().__init__((key.lower(), value) for key, value in items)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)


class Response:
    """A server answer: ``status``, ``headers`` (case-insensitive), ``json`` (None if not JSON), ``text``, ``raw``.

    ``json`` and ``text`` are computed on first use (NDJSON answers only need ``raw``).
    """

    __slots__ = ("status", "headers", "raw", "_json", "_parsed")

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._json = _parse_json(self.raw)
            self._parsed = True
        return self._json

    @property
    def text(self):
        return self.raw.decode("utf-8", errors="replace")

    def __repr__(self):
        return "Response(status=%r, json=%r)" % (self.status, self.json)


def _parse_json(raw):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _retry_after_seconds(value):
    """Parse a Retry-After header (delta seconds or HTTP date); None when absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _retry_hint_seconds(headers, raw):
    """The server's wait hint: the Retry-After header, else a ``retry_after_ms`` field of a JSON error body."""
    from_header = _retry_after_seconds(headers.get("retry-after"))
    if from_header is not None:
        return from_header
    if raw and raw[:1] == b"{" and b"retry_after_ms" in raw:
        body = _parse_json(raw)
        value = body.get("retry_after_ms") if isinstance(body, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return min(max(value / 1000.0, 0.0), RETRY_AFTER_CAP_S)
    return None


def _env_bool(text, default):
    if text is None or text == "":
        return default
    return text.strip().lower() in ("1", "true", "yes", "on", "y")


def _certificate_identity(cert_path):
    """Best effort: the SPIFFE URI (or subject CN) of a client certificate, for error hints."""
    try:
        # ssl's private decoder reads a PEM certificate without extra packages; it only
        # reads the public certificate, never the key.
        decoded = ssl._ssl._test_decode_cert(cert_path)  # pylint: disable=protected-access
    except Exception:  # noqa: BLE001 - a hint is optional, any failure means "unknown"
        return None
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "URI":
            return value
    for rdn in decoded.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def redact_userinfo(url):
    """``url`` with any ``user:password@`` replaced by ``***@`` (for messages; never parses, so it
    works on malformed URLs too)."""
    return re.sub(r"(//)[^/?#@]*@", r"\1***@", str(url))


def _split_url(url):
    """``(urlsplit parts, port)`` of the cluster URL; CeptraError saying what to fix when it is malformed.

    urlsplit raises ValueError for a bracket left open (``http://[::1``) and ``.port`` for a
    port out of range or not a number: both are the user's input, so they get a message.
    """
    example = "e.g. https://ceptra.example:8443 or http://[::1]:8080"
    shown = redact_userinfo(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise CeptraError("url %r is not a valid URL (%s); give the cluster's base URL, %s" % (shown, exc, example)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CeptraError("url %r must be an http:// or https:// URL with a host name, %s" % (shown, example))
    if port == 0:
        raise CeptraError("url %r has port 0; give the port the cluster listens on (1-65535), %s" % (shown, example))
    return parts, port or (443 if parts.scheme == "https" else 80)


class CeptraClient:
    """HTTP client for the CEPtra contract (see docs/developers/interfaces.md)."""

    def __init__(self, url, token=None, client_cert=None, client_key=None, ca_path=None,
                 validate_certs=CONNECTION_DEFAULTS["validate_certs"], timeout=CONNECTION_DEFAULTS["timeout"],
                 retries=CONNECTION_DEFAULTS["retries"], backoff_base=0.25, backoff_max=8.0,
                 routes=None, user_agent="ceptra.backfill", check_hostname=True):
        if not url or not isinstance(url, str):
            raise CeptraError("url is required (the cluster's base URL, e.g. https://ceptra.example:8443)")
        parts, port = _split_url(url)
        if bool(client_cert) != bool(client_key):
            raise CeptraError("client_cert and client_key must be given together (mutual TLS needs both)")
        try:
            timeout = float(timeout)
            retries = int(retries)
        except (TypeError, ValueError):
            raise CeptraError("timeout must be a number of seconds and retries a whole number") from None
        if timeout <= 0:
            raise CeptraError("timeout must be greater than 0 seconds, got %s" % timeout)
        if retries < 0:
            raise CeptraError("retries must be 0 or more, got %s" % retries)
        try:
            self.routes = RouteTable(routes)
        except RouteError as exc:
            raise CeptraError(str(exc)) from None

        self.url = url.strip().rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port
        self.base_path = parts.path.rstrip("/")
        self.token = token
        self.client_cert = client_cert
        self.client_key = client_key
        self.ca_path = ca_path
        self.validate_certs = bool(validate_certs)
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.user_agent = user_agent
        self.check_hostname = bool(check_hostname)
        self.ssl_context = self._make_ssl_context() if self.scheme == "https" else None
        # How the client waits between retries and draws their jitter (replaceable, e.g. to not wait).
        self.sleep = time.sleep
        self.random = random.random
        self._local = threading.local()
        self._all_connections = []
        self._lock = threading.Lock()

    def __repr__(self):
        # Never show the token.
        return "CeptraClient(url=%r)" % self.url

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def from_options(cls, options):
        """Build a client from a mapping of the shared connection options (a module's params,
        ``snapshot_diff``'s ``other``); unset options take ``CONNECTION_DEFAULTS``."""
        kwargs = {key: options.get(key) for key in ("url", "token", "client_cert", "client_key", "ca_path", "routes")}
        for key, default in CONNECTION_DEFAULTS.items():
            kwargs[key] = default if options.get(key) is None else options.get(key)
        return cls(**kwargs)

    @classmethod
    def from_module(cls, module):
        """Build a client from an AnsibleModule's shared connection options."""
        return cls.from_options(module.params)

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Build a client from ``CEPTRA_*`` environment variables (for command-line tools).

        Keyword arguments override the environment (``None`` values are ignored).
        """
        env = os.environ if environ is None else environ
        try:
            routes = parse_routes_env(env.get("CEPTRA_ROUTES"))
        except RouteError as exc:
            raise CeptraError(str(exc)) from None
        options = {
            "url": env.get("CEPTRA_URL"),
            "token": env.get("CEPTRA_TOKEN") or None,
            "client_cert": env.get("CEPTRA_CLIENT_CERT") or None,
            "client_key": env.get("CEPTRA_CLIENT_KEY") or None,
            "ca_path": env.get("CEPTRA_CA_PATH") or None,
            "validate_certs": _env_bool(env.get("CEPTRA_VALIDATE_CERTS"), None),
            "timeout": env.get("CEPTRA_TIMEOUT") or None,
            "retries": env.get("CEPTRA_RETRIES") or None,
            "routes": routes,
        }
        options.update({key: value for key, value in overrides.items() if value is not None})
        return cls.from_options(options)

    def _make_ssl_context(self):
        if self.validate_certs:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            context.check_hostname = self.check_hostname
            if self.ca_path:
                try:
                    if os.path.isdir(self.ca_path):
                        context.load_verify_locations(capath=self.ca_path)
                    else:
                        context.load_verify_locations(cafile=self.ca_path)
                except (OSError, ssl.SSLError) as exc:
                    raise CeptraError("could not load the CA bundle ca_path=%s: %s" % (self.ca_path, _reason(exc))) from None
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            for label, path in (("client_cert", self.client_cert), ("client_key", self.client_key)):
                if not os.path.isfile(path):
                    raise CeptraError("%s file %s does not exist or is not a file" % (label, path))
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                # The ssl error names the problem, never the key material.
                raise CeptraError(
                    "could not load the client certificate %s with key %s: %s (both must be PEM files and the key "
                    "must match the certificate, unencrypted)" % (self.client_cert, self.client_key, _reason(exc))
                ) from None
        return context

    # ----------------------------------------------------------------- connections
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            self._local.used = False
            with self._lock:
                self._all_connections.append(conn)
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._all_connections:
                    self._all_connections.remove(conn)

    def close(self):
        """Close every connection this client opened."""
        with self._lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ----------------------------------------------------------------- requests
    def route_path(self, route, params=None, query=None):
        """Return the full request target (base path + route path + query string)."""
        try:
            path = self.base_path + self.routes.path(route, params)
        except RouteError as exc:
            raise CeptraError(str(exc), route=route) from None
        if query:
            query = {key: value for key, value in query.items() if value is not None}
            if query:
                path += "?" + urlencode(query, doseq=True)
        return path

    def _headers(self, extra, content_type, accept, method, idempotency_key):
        headers = {"User-Agent": self.user_agent, "Accept": accept}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        if content_type:
            headers["Content-Type"] = content_type
        if method in WRITE_METHODS:
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        if extra:
            headers.update(extra)
        return headers

    def request(self, method, route, *, params=None, query=None, body=None, headers=None,
                idempotency_key=None, expected=None):
        """Send one logical call (with retries) and return a :class:`Response`.

        ``route`` is a route name from the route table, ``params`` fill its placeholders,
        ``query`` becomes the query string (None values dropped). ``body``: dict/list -> JSON;
        ``bytes``/``str`` are sent as they are (set ``Content-Type`` in ``headers`` when they
        are not JSON). A status outside ``expected`` (default: any 2xx) raises :class:`CeptraError`.
        """
        method = method.upper()
        path = self.route_path(route, params, query)
        if body is None:
            payload, content_type = None, None
        elif isinstance(body, (bytes, bytearray)):
            payload, content_type = bytes(body), JSON_TYPE
        elif isinstance(body, str):
            payload, content_type = body.encode("utf-8"), JSON_TYPE
        else:
            payload, content_type = json.dumps(body, separators=(",", ":")).encode("utf-8"), JSON_TYPE
        all_headers = self._headers(headers, content_type, JSON_TYPE, method, idempotency_key)
        return self._send(method, route, path, payload, all_headers, expected)

    def get_json(self, route, **kw):
        """GET a route and return its JSON body (CeptraError if the body is not JSON)."""
        response = self.request("GET", route, **kw)
        if response.json is None:
            path = self.route_path(route, kw.get("params"), kw.get("query"))
            raise CeptraError(
                "GET %s returned a body that is not JSON (%d bytes); check that url points at the CEPtra control "
                "plane and that the routes option maps %r correctly" % (path, len(response.raw), route),
                status=response.status, route=route, method="GET", path=path,
            )
        return response.json

    def post_ndjson_raw(self, route, body, *, params=None, query=None, expected=None):
        """POST an NDJSON ``body`` (bytes, one JSON document per line) and return the :class:`Response`.

        The same exchange as :meth:`post_ndjson` (route table, auth and identity headers, a
        fresh Idempotency-Key, retries and backoff, CeptraError for a failed call) without
        decoding the answer: ``response.raw`` holds the NDJSON answer bytes, for callers
        with a cheaper line parser (the replay engine). ``body`` is sent as it is.
        """
        path = self.route_path(route, params, query)
        headers = self._headers(None, NDJSON_TYPE, NDJSON_TYPE, "POST", None)
        return self._send("POST", route, path, body, headers, expected)

    def post_ndjson(self, route, lines, *, params=None, query=None, expected=None):
        """POST NDJSON lines (each a ``bytes`` JSON document) and return the parsed response lines."""
        payload = b"\n".join(lines) + b"\n" if lines else b""
        response = self.post_ndjson_raw(route, payload, params=params, query=query, expected=expected)
        out = []
        loads = json.loads
        for line in response.raw.split(b"\n"):
            if line.strip():
                try:
                    out.append(loads(line))
                except ValueError:
                    path = self.route_path(route, params, query)
                    raise CeptraError(
                        "POST %s returned a line that is not JSON: %r" % (path, line[:200]),
                        status=response.status, route=route, method="POST", path=path,
                    ) from None
        return out

    def backoff_delay(self, attempt, retry_after=None):
        """Seconds to wait before retry number ``attempt`` (1-based): Retry-After, else full jitter."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self.random() * ceiling

    def _send_once(self, method, path, payload, headers):
        """One HTTP exchange on the persistent connection; reconnects once if a kept-alive socket went stale."""
        for fresh_try in (False, True):
            conn = self._connection()
            reused = self._local.used
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop_connection()
                # The server closed an idle keep-alive socket: not a server failure, so
                # resend at once on a new socket without spending a retry.
                if reused and not fresh_try:
                    continue
                raise
            except BaseException:
                self._drop_connection()
                raise
            self._local.used = True
            if resp.will_close:
                self._drop_connection()
            return resp.status, Headers(resp.getheaders()), raw
        raise AssertionError("unreachable")

    def _send(self, method, route, path, payload, headers, expected):
        attempts = 0
        while True:
            attempts += 1
            try:
                status, resp_headers, raw = self._send_once(method, path, payload, headers)
            except ssl.SSLCertVerificationError as exc:
                raise CeptraError(
                    "%s %s failed: TLS certificate verification failed for %s:%s: %s. Set ca_path to the CA "
                    "bundle that signed the server certificate (validate_certs: false only for a throwaway lab)"
                    % (method, path, self.host, self.port, exc.verify_message or _reason(exc)),
                    route=route, method=method, path=path, attempts=attempts,
                ) from None
            except ssl.SSLError as exc:
                raise CeptraError(
                    "%s %s failed: TLS handshake with %s:%s failed: %s. Check that the server expects TLS, that "
                    "client_cert/client_key are a certificate the cluster trusts" % (method, path, self.host, self.port, _reason(exc)),
                    route=route, method=method, path=path, attempts=attempts,
                ) from None
            except (OSError, *_CONNECTION_ERRORS) as exc:
                if attempts <= self.retries:
                    self.sleep(self.backoff_delay(attempts))
                    continue
                hint = "check url, that the cluster is up and reachable, and timeout"
                closed = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError))
                if closed and self.scheme == "https" and not self.client_cert:
                    # A mutual-TLS server drops a client that shows no certificate.
                    hint = ("the server closed the connection: if it requires mutual TLS, set client_cert and "
                            "client_key (CEPTRA_CLIENT_CERT / CEPTRA_CLIENT_KEY)")
                raise CeptraError(
                    "%s %s failed: could not reach %s (%s) after %d attempt(s); %s"
                    % (method, path, redact_userinfo(self.url), _reason(exc), attempts, hint),
                    route=route, method=method, path=path, attempts=attempts,
                ) from None
            if (200 <= status < 300) if expected is None else (status in expected):
                return Response(status, resp_headers, raw)
            if status in RETRYABLE_STATUSES and attempts <= self.retries:
                self.sleep(self.backoff_delay(attempts, _retry_hint_seconds(resp_headers, raw)))
                continue
            raise self._error(method, route, path, status, raw, attempts)

    def _error(self, method, route, path, status, raw, attempts):
        body = _parse_json(raw)
        if not isinstance(body, dict):
            body = None
        error_text = None
        violations = []
        if body is not None:
            error_text = body.get("error") or body.get("message") or body.get("detail")
            for item in body.get("violations") or ():
                if isinstance(item, dict):
                    where = item.get("path")
                    text = item.get("message") or item.get("error") or ""
                    violations.append("%s: %s" % (where, text) if where else str(text))
                else:
                    violations.append(str(item))
        if not error_text:
            snippet = raw.decode("utf-8", errors="replace").strip()[:200]
            error_text = snippet or http.client.responses.get(status, "error")
        message = "%s %s failed with %d: %s" % (method, path, status, error_text)
        if violations:
            message += " (%s)" % "; ".join(violations)
        if status in RETRYABLE_STATUSES and attempts > 1:
            message += " [gave up after %d attempts]" % attempts
        hint = self._hint(method, route, path, status, body)
        if hint:
            message += ". " + hint
        return CeptraError(message, status=status, body=body, route=route, method=method, path=path,
                           attempts=attempts, hint=hint)

    def _identity(self, body):
        if body:
            for key in ("identity", "actor", "principal"):
                if body.get(key):
                    return str(body[key])
            # e.g. "identity spiffe://ceptra.lab/role/observer has role observer; this call needs operator"
            found = re.search(r"identity (\S+)", str(body.get("error") or ""))
            if found:
                return found.group(1)
        if self.client_cert:
            found = _certificate_identity(self.client_cert)
            return found or "of client certificate %s" % self.client_cert
        if self.token:
            return "of the bearer token"
        return "(anonymous)"

    def _hint(self, method, route, path, status, body):
        if status == 401:
            return ("The cluster did not accept the caller's identity: give an operator token (token / CEPTRA_TOKEN) "
                    "or a client certificate and key signed by a CA the cluster trusts")
        if status == 403:
            needs = re.search(r"needs (?:role )?(\w+)", str((body or {}).get("error") or ""))
            role = (body or {}).get("required_role") or (needs.group(1) if needs else _required_role(method, route))
            return "The identity %s lacks role %s; use an %s certificate or token" % (self._identity(body), role, role)
        if status == 412:
            return ("The resource changed since it was read (If-Match version mismatch); read it again and retry")
        if status == 404:
            placeholders_used = "{" in self.routes.templates.get(route, "")
            if placeholders_used:
                return ("The server knows no such object at %s; check the id, or map route %r to the path your "
                        "deployment serves with the routes option (CEPTRA_ROUTES)" % (path, route))
            return ("The server does not serve route %r at %s; if your deployment serves it elsewhere, map it with "
                    "the routes option or CEPTRA_ROUTES (e.g. {\"%s\": \"/prefix%s\"})"
                    % (route, path, route, self.routes.templates.get(route, "")))
        if status == 415:
            return "The server rejected the request's content type"
        if status in RETRYABLE_STATUSES:
            return "The cluster is overloaded or unavailable; retry later or raise retries"
        return ""


def _required_role(method, route):
    if route.startswith("test_") and not (route == "test_metrics_snapshot"):
        return "admin"
    if route in ("append", "append_stream"):
        return "ingest"
    if method in WRITE_METHODS:
        return "operator"
    return "observer"


def _reason(exc):
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
