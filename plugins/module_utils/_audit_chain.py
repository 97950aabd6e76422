# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the hash-chained audit log (format, append, verify, anchors).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the hash-chained audit log.

One JSON object per line. Every record carries ``v`` (format version), ``chain`` (the log's
id, chosen by its first record), ``seq`` (1, 2, 3, ...), ``prev`` (the previous record's
``hash``; 64 zeros for the first) and ``hash`` = sha256 of the record's canonical JSON
without ``hash`` (sorted keys, compact separators, ASCII). So an edited record fails its
hash, and a deleted, inserted or reordered record breaks the ``seq``/``prev`` links.

What a chain cannot show by itself is a cut tail (the last records removed): the head is
sent to the control-plane audit log as an *anchor* ({chain, seq, hash}); a later check
compares the file with the latest anchor (:func:`anchor_problems`).

Writers (:class:`ChainWriter`) append under an exclusive ``flock`` with ``O_APPEND`` and
fsync every record, so several processes may share one log. Readers (:func:`verify_chain`)
take a shared lock.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import uuid

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

FORMAT_VERSION = 1
GENESIS = "0" * 64
ANCHOR_KIND = "audit_chain_anchor"
_CHAIN_FIELDS = ("v", "chain", "seq", "prev", "hash")
_TAIL_CHUNK = 65536
MAX_PROBLEMS = 50


class AuditChainError(CeptraError):
    """The log cannot be read or extended; the message says what to do."""

    context = ""   # the message already says what failed


def canonical_bytes(record):
    """The bytes a record's hash covers: canonical JSON of every field except ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(record):
    """sha256 (hex) of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def seal(fields, previous):
    """A complete record: ``fields`` chained after ``previous`` (a record, or None for the first)."""
    record = dict(fields)
    for key in _CHAIN_FIELDS:
        record.pop(key, None)
    record["v"] = FORMAT_VERSION
    if previous is None:
        record.update(chain=uuid.uuid4().hex, seq=1, prev=GENESIS)
    else:
        record.update(chain=previous["chain"], seq=int(previous["seq"]) + 1, prev=previous["hash"])
    record["hash"] = record_hash(record)
    return record


def encode_line(record):
    """The line written to the log (sorted keys, ASCII, newline)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _read_last_line(fd, size):
    """The last line of the file (without its newline), reading backwards in chunks."""
    end = size
    buf = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        body = buf[:-1] if buf.endswith(b"\n") else buf
        cut = body.rfind(b"\n")
        if cut >= 0:
            return buf[cut + 1:]
    return buf


def _parse_tail(line, path):
    if not line.endswith(b"\n"):
        raise AuditChainError(
            "the last line of %s is incomplete (a crash or a full disk while writing, or a cut file); "
            "the chain is not extended. Check it with ceptra.backfill.audit_chain_info, then move the file "
            "aside (keep it as evidence) to start a new log" % path)
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:
        record = None
    if not isinstance(record, dict) or not all(k in record for k in ("chain", "seq", "hash")):
        raise AuditChainError(
            "the last line of %s is not a chained audit record (edited or damaged); the chain is not "
            "extended. Check it with ceptra.backfill.audit_chain_info, then move the file aside "
            "(keep it as evidence) to start a new log" % path)
    return record


class ChainWriter(object):
    """Append records to a chained log; safe across processes (flock + O_APPEND + fsync)."""

    def __init__(self, path, mode=0o640):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.mode = mode

    def append(self, fields):
        """Seal ``fields`` after the log's last record, append and fsync; return the record."""
        directory = os.path.dirname(self.path)
        existed = os.path.exists(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, self.mode)
        except OSError as exc:
            raise AuditChainError("cannot open the audit log %s for appending: %s" % (self.path, exc.strerror))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            previous = _parse_tail(_read_last_line(fd, size), self.path) if size else None
            record = seal(fields, previous)
            data = encode_line(record)
            try:
                while data:
                    written = os.write(fd, data)
                    data = data[written:]
                os.fsync(fd)
            except OSError as exc:
                raise AuditChainError("cannot write the audit log %s: %s" % (self.path, exc.strerror))
        finally:
            os.close(fd)   # also releases the lock
        if not existed:
            _fsync_directory(directory)
        return record


def _fsync_directory(directory):
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def head_of(record):
    """The head summary of a record: {seq, hash, time, run}."""
    if record is None:
        return None
    return {"seq": record.get("seq"), "hash": record.get("hash"), "time": record.get("time"), "run": record.get("run")}


def verify_chain(path, keep=None):
    """Read and check the whole log.

    Returns a dict: ``path``, ``exists``, ``ok``, ``problems`` (readable strings, at most
    :data:`MAX_PROBLEMS`, then a count), ``records`` (lines read), ``chain_id``, ``head``
    ({seq, hash, time, run} of the last record), ``hashes`` ({seq: hash} of every intact
    record, for anchor checks), ``runs`` (run id -> {first_seq, last_seq, records, operator,
    started, ended}) and ``kept`` (the records for which ``keep(record)`` is true).
    """
    path = os.path.abspath(os.path.expanduser(path))
    report = {"path": path, "exists": os.path.exists(path), "ok": True, "problems": [], "records": 0,
              "chain_id": None, "head": None, "hashes": {}, "runs": {}, "kept": []}
    if not report["exists"]:
        return report
    problems = []
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise AuditChainError("cannot read the audit log %s: %s" % (path, exc.strerror))
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        previous = None
        for number, raw in enumerate(handle, 1):
            report["records"] = number
            where = "line %d" % number
            if not raw.endswith(b"\n"):
                problems.append("%s is incomplete (no newline): the file was cut or a write did not finish" % where)
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:
                problems.append("%s is not JSON: the record was edited or damaged" % where)
                previous = None
                continue
            if not isinstance(record, dict) or not all(k in record for k in _CHAIN_FIELDS):
                problems.append("%s is not a chained audit record (missing %s)"
                                % (where, ", ".join(k for k in _CHAIN_FIELDS if not isinstance(record, dict) or k not in record)))
                previous = None
                continue
            problems.extend(_link_problems(record, previous, number))
            if record_hash(record) != record["hash"]:
                problems.append("%s (seq %s) was changed after it was written: its hash does not match its content"
                                % (where, record["seq"]))
            else:
                report["hashes"][record["seq"]] = record["hash"]
            if report["chain_id"] is None:
                report["chain_id"] = record["chain"]
            _count_run(report["runs"], record)
            if keep is not None and keep(record):
                report["kept"].append(record)
            previous = record
        report["head"] = head_of(previous)
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + ["... and %d more problems" % (len(problems) - MAX_PROBLEMS)]
    report["problems"] = problems
    report["ok"] = not problems
    return report


def _link_problems(record, previous, number):
    where = "line %d (seq %s)" % (number, record.get("seq"))
    if previous is None:
        if number == 1 and (record["seq"] != 1 or record["prev"] != GENESIS):
            return ["the log does not begin with its first record (%s): records before it were removed" % where]
        return []   # after a damaged line: that line was already reported
    out = []
    if record["chain"] != previous["chain"]:
        out.append("%s belongs to another log (chain %s, not %s): lines of two logs were mixed"
                   % (where, record["chain"], previous["chain"]))
    expected = int(previous["seq"]) + 1
    if record["seq"] != expected:
        if isinstance(record["seq"], int) and record["seq"] > expected:
            out.append("%s follows seq %s: %d record(s) were removed" % (where, previous["seq"], record["seq"] - expected))
        else:
            out.append("%s follows seq %s: records were reordered or repeated" % (where, previous["seq"]))
    elif record["prev"] != previous["hash"]:
        out.append("%s does not link to the record before it (prev differs): a record was replaced, "
                   "inserted or moved" % where)
    return out


def _count_run(runs, record):
    run = record.get("run")
    if run is None:
        return
    entry = runs.setdefault(run, {"run": run, "first_seq": record["seq"], "last_seq": record["seq"], "records": 0,
                                  "operator": record.get("operator"), "started": record.get("time"), "ended": None})
    entry["records"] += 1
    entry["last_seq"] = record["seq"]
    if record.get("event") == "run_end":
        entry["ended"] = record.get("time")


# ---------------------------------------------------------------------------- anchors
def anchor_details(report, controller=None):
    """The details of an anchor record for the log's current head (for the ``audit`` module)."""
    head = report.get("head") or {}
    return {"chain": report.get("chain_id"), "seq": head.get("seq"), "hash": head.get("hash"),
            "run_id": head.get("run"), "log_path": report.get("path"),
            "controller": controller or socket.gethostname()}


def latest_anchor(records, chain_id=None, log_path=None, controller=None):
    """The newest anchor (its details) among control-plane audit ``records``.

    Returns ``(anchor, other)``: ``anchor`` is the newest anchor of ``chain_id`` (or None);
    ``other`` is the newest anchor for the same ``log_path`` on the same ``controller`` that
    names another chain (a log that was replaced), or None.
    """
    anchor = other = None
    for record in records or []:
        if not isinstance(record, dict):
            continue
        details = record.get("details") if isinstance(record.get("details"), dict) else None
        if details is None:
            continue
        if record.get("kind") not in (None, ANCHOR_KIND) or "chain" not in details or "seq" not in details:
            continue
        if chain_id is not None and details.get("chain") == chain_id:
            anchor = details
        elif log_path is not None and details.get("log_path") == log_path and \
                (controller is None or details.get("controller") in (None, controller)):
            other = details
    return anchor, other


def anchor_problems(report, anchor):
    """Why the log does not match ``anchor`` ({chain, seq, hash}); [] when it does."""
    if not anchor:
        return []
    try:
        seq = int(anchor.get("seq"))
    except (TypeError, ValueError):
        return ["the anchor has no valid seq: %r" % (anchor.get("seq"),)]
    if anchor.get("chain") and report.get("chain_id") and anchor["chain"] != report["chain_id"]:
        return ["the log %s is chain %s but the anchor names chain %s: the log was replaced or emptied"
                % (report.get("path"), report.get("chain_id"), anchor["chain"])]
    head = report.get("head") or {}
    if not report.get("exists") or head.get("seq") is None:
        return ["the log %s is missing or empty, but the control plane anchored seq %d: the log was removed or "
                "emptied" % (report.get("path"), seq)]
    if int(head["seq"]) < seq:
        return ["the log ends at seq %s but the control plane anchored seq %d: %d record(s) at its end were cut"
                % (head["seq"], seq, seq - int(head["seq"]))]
    found = report.get("hashes", {}).get(seq)
    if found is None:
        return ["the anchored record seq %d is not an intact record of the log" % seq]
    if found != anchor.get("hash"):
        return ["record seq %d differs from the anchored one (hash %s, anchored %s): the log was rewritten"
                % (seq, found[:12], str(anchor.get("hash"))[:12])]
    return []


# ---------------------------------------------------------------------------- gate
def writable_problem(path):
    """None when a writer could append to ``path`` now, else the reason (nothing is written)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        return "%s is a directory, not a log file" % path
    if not os.path.exists(path):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            return "the directory %s does not exist" % directory
        if not os.access(directory, os.W_OK | os.X_OK):
            return "the directory %s is not writable by this user" % directory
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return "%s cannot be opened for appending: %s" % (path, exc.strerror or errno.errorcode.get(exc.errno))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return "%s cannot be locked: %s" % (path, exc.strerror)
        st = os.statvfs(os.path.dirname(path))
        if st.f_bavail * st.f_frsize < 1024 * 1024:
            return "the file system of %s has less than 1 MiB free" % path
    finally:
        os.close(fd)
    return None
