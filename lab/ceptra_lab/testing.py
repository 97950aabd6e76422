"""Test harness: run a lab in a subprocess (`with LabProcess(...) as lab:`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ceptra_lab.auth import ROLES

URL_LINE = "ceptra-lab listening on "


class LabProcess:
    """A lab server subprocess on a free port.

    `lab.url`, `lab.tokens` (role -> token; the demo tokens unless a tokens file is given),
    `lab.tls_dir`, `lab.pid`, `lab.stop()`; the context manager stops it with SIGTERM.
    """

    def __init__(self, partitions: int = 4, test_mode: bool = True, apply_capacity: float | None = None,
                 tls_dir: str | None = None, tokens: dict | str | None = None, state_dir: str | None = None,
                 extra_args=(), startup_timeout: float = 30.0):
        self.partitions = partitions
        self.test_mode = test_mode
        self.apply_capacity = apply_capacity
        self.tls_dir = tls_dir
        self.state_dir = state_dir
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._tokens_file = None
        self._owns_tokens_file = False
        self.tokens = {role: f"lab-{role}" for role in ROLES}
        if isinstance(tokens, dict):
            # role -> token mapping: write a tokens file for the server
            import json
            handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump({"tokens": [{"token": token, "role": role, "identity": f"spiffe://ceptra.lab/role/{role}"}
                                  for role, token in tokens.items()]}, handle)
            handle.close()
            self._tokens_file = handle.name
            self._owns_tokens_file = True
            self.tokens = dict(tokens)
        elif isinstance(tokens, str):
            import json
            self._tokens_file = tokens
            with open(tokens, encoding="utf-8") as fh:
                self.tokens = {entry["role"]: entry["token"] for entry in json.load(fh)["tokens"]}
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        """The serve command line."""
        cmd = [sys.executable, "-m", "ceptra_lab", "serve", "--partitions", str(self.partitions), "--port", "0"]
        if self.test_mode:
            cmd.append("--test-mode")
        if self.apply_capacity is not None:
            cmd += ["--apply-capacity", str(self.apply_capacity)]
        if self.tls_dir:
            cmd += ["--tls-dir", self.tls_dir]
        if self._tokens_file:
            cmd += ["--tokens", self._tokens_file]
        if self.state_dir:
            cmd += ["--state-dir", self.state_dir]
        return cmd + [str(arg) for arg in self.extra_args]

    @property
    def pid(self) -> int | None:
        """The server's process id."""
        return self.process.pid if self.process else None

    def start(self) -> "LabProcess":
        """Start the server and wait for its URL line."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        found = threading.Event()

        def read_output() -> None:
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith(URL_LINE) and not found.is_set():
                    self.url = line[len(URL_LINE):].strip()
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read_output, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not found.wait(0.05):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("lab did not start in time; output:\n" + "\n".join(self.output))
        if self.url is None:
            code = self.process.wait(5)
            raise RuntimeError(f"lab exited with {code} before listening; output:\n" + "\n".join(self.output))
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the server and wait; returns its exit code (kills it after `timeout`)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self._reader is not None:
            self._reader.join(2)
        return self.process.returncode

    def __enter__(self) -> "LabProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._owns_tokens_file and os.path.exists(self._tokens_file):
            os.unlink(self._tokens_file)

    def request(self, method: str, path: str, body=None, role: str | None = "admin", headers: dict | None = None,
                data: bytes | None = None, timeout: float = 30.0) -> tuple[int, dict, object]:
        """One HTTP call as `role` (bearer token, or on a TLS lab the role's client certificate);
        returns (status, headers, parsed body).

        `body` is sent as JSON; `data` as raw bytes. The parsed body is a dict/list for JSON
        responses, else the text.
        """
        import json
        import urllib.error
        import urllib.request

        sent_headers = dict(headers or {})
        context = None
        if self.url.startswith("https://"):
            # mutual TLS: the role's client certificate is the identity (role None: no certificate)
            from ceptra_lab.certs import client_ssl_context
            context = client_ssl_context(self.tls_dir, role)
        elif role is not None:
            sent_headers.setdefault("Authorization", f"Bearer {self.tokens[role]}")
        if body is not None:
            data = json.dumps(body).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent_headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                status, response_headers, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, response_headers, raw = exc.code, dict(exc.headers), exc.read()
        text = raw.decode("utf-8", "replace")
        if response_headers.get("Content-Type", "").startswith("application/json"):
            return status, response_headers, json.loads(text)
        return status, response_headers, text


def sample_event(event_id: str, ts_ns: int | None = None, part_id: str | None = None, metric: str = "lab_events_total",
                 labels: dict | None = None, value: float = 1.0, partition_key: str = "key-1", **extra) -> dict:
    """An append message in the documented event format (helper for tests)."""
    message = {"event_id": event_id, "partition_key": partition_key, "ts_ns": ts_ns if ts_ns is not None else time.time_ns(),
               "schema_key": "metric_sample_v1", "payload": {"metric": metric, "labels": labels or {}, "value": value}}
    if part_id is not None:
        message["part_id"] = str(part_id)
    message.update(extra)
    return message


def append_stream(lab: LabProcess, part_id: str, events: list[dict], role: str = "ingest") -> list[dict]:
    """Send events through the NDJSON append stream of one partition; returns the response lines."""
    import json

    body = b"".join(json.dumps(event).encode() + b"\n" for event in events)
    status, _, text = lab.request("POST", f"/v1/partitions/{part_id}/append-stream", data=body, role=role,
                                  headers={"Content-Type": "application/x-ndjson"})
    if status != 200:
        raise AssertionError(f"append-stream answered {status}: {text}")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll until predicate() is truthy (returns its value) or raise AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
