"""Run a lab in the background for tools that outlive one process (Molecule's create/destroy).

``python -m ceptra_lab.background start --state lab.json [--log lab.log] -- serve --partitions 4 --port 0``
starts ``ceptra-lab serve ...`` detached (own session, output to the log file), waits for its
``ceptra-lab listening on <url>`` line and writes ``{"url", "pid", "log", "command"}`` to the
state file. ``python -m ceptra_lab.background stop --state lab.json`` stops exactly that
process: SIGTERM to the recorded pid (after checking the pid still runs a lab, so a reused pid
is never signalled), a wait for its exit, SIGKILL only after the timeout, then removes the
state file. Nothing is ever stopped by name.

Both print one JSON line (what they did) and exit 0, or print a message to stderr and exit 2.
Python callers in one process use :class:`ceptra_lab.testing.LabProcess` instead.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from ceptra_lab.testing import URL_LINE

STOPPED_LINE = "ceptra-lab stopped"


class BackgroundError(Exception):
    """A start or stop that did not happen; the message says what to do."""


def start(serve_args: list[str], state_file: str, log_file: str | None = None, timeout: float = 30.0) -> dict:
    """Start ``ceptra-lab <serve_args>`` detached; returns (and writes) its state record.

    A state file whose lab still runs is reused as it is (``started`` false), so a repeated
    start does not leave a second server behind.
    """
    if not serve_args or serve_args[0] != "serve":
        raise BackgroundError("the lab command must start with 'serve' (e.g. -- serve --partitions 4 --port 0)")
    running = _read_state(state_file)
    if running and _is_lab(running["pid"]):
        return dict(running, started=False)
    log_file = log_file or os.path.splitext(state_file)[0] + ".log"
    command = [sys.executable, "-m", "ceptra_lab", *serve_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_file, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    url = None
    while url is None:
        url = _url_from_log(log_file)
        if url is None and process.poll() is not None:
            raise BackgroundError(f"the lab exited with {process.returncode} before listening; its output:\n"
                                  + _tail(log_file))
        if url is None and time.monotonic() > deadline:
            _terminate(process.pid, 10.0)
            raise BackgroundError(f"the lab did not print its URL within {timeout:.0f} s; its output:\n" + _tail(log_file))
        if url is None:
            time.sleep(0.05)
    state = {"url": url, "pid": process.pid, "log": os.path.abspath(log_file), "command": command}
    tmp = state_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(tmp, state_file)
    return dict(state, started=True)


def stop(state_file: str, timeout: float = 30.0) -> dict:
    """Stop the lab recorded in ``state_file`` by its pid; returns what happened.

    No state file: nothing to stop (``stopped`` false). A recorded pid that no longer runs a
    lab is not signalled; the stale state file is removed.
    """
    state = _read_state(state_file)
    if state is None:
        return {"stopped": False, "reason": f"no state file {state_file}: no lab to stop"}
    pid = int(state["pid"])
    result = {"pid": pid, "url": state.get("url")}
    if not _is_lab(pid):
        os.unlink(state_file)
        return dict(result, stopped=False, reason=f"process {pid} is not running a lab any more")
    killed = _terminate(pid, timeout)
    os.unlink(state_file)
    clean = not killed and STOPPED_LINE in _tail(state.get("log", ""))
    return dict(result, stopped=True, killed=killed, clean_shutdown=clean)


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid`` and wait for it to exit; SIGKILL after ``timeout``. True if killed."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie has exited (its parent may simply not have reaped it yet)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)   # our own child: reap it
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _is_lab(pid: int) -> bool:
    """True if ``pid`` is alive and runs ``ceptra_lab`` (guards against a reused pid)."""
    if not _alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True   # no /proc: the pid is alive, and it is the one we recorded
    return b"ceptra_lab" in cmdline or b"ceptra-lab" in cmdline


def _read_state(state_file: str) -> dict | None:
    try:
        with open(state_file, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackgroundError(f"cannot read the lab state file {state_file}: {exc}; remove it if no lab runs") from exc


def _url_from_log(log_file: str) -> str | None:
    with open(log_file, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(URL_LINE):
                return line[len(URL_LINE):].strip()
    return None


def _tail(log_file: str, lines: int = 20) -> str:
    try:
        with open(log_file, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Command line: ``start --state FILE [--log FILE] -- serve ...`` or ``stop --state FILE``."""
    parser = argparse.ArgumentParser(prog="python -m ceptra_lab.background",
                                     description="start a lab in the background, or stop it by its recorded pid")
    sub = parser.add_subparsers(dest="command", required=True)
    start_parser = sub.add_parser("start", help="start `ceptra-lab serve ...` detached and record its URL and pid")
    start_parser.add_argument("--state", required=True, help="JSON file that receives url and pid")
    start_parser.add_argument("--log", help="the lab's output (default: the state file's name with .log)")
    start_parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the URL line")
    start_parser.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- serve --partitions N ...")
    stop_parser = sub.add_parser("stop", help="stop the lab recorded in the state file (SIGTERM to its pid)")
    stop_parser.add_argument("--state", required=True)
    stop_parser.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            serve_args = args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args
            result = start(serve_args, args.state, args.log, args.timeout)
        else:
            result = stop(args.state, args.timeout)
    except (BackgroundError, OSError) as exc:
        print(f"ceptra_lab.background {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
