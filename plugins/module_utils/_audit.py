# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: who is acting, and the control-plane audit log (write, read).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): operator identity and the one writer and
reader of control-plane audit records (``POST`` / ``GET /v1/audit``, contract section 6).

A record is ``{"kind": str, "details": {...}}``; the cluster adds ``id``, ``ts`` and
``actor`` (the caller's identity). Writers: the ``audit`` module, the config manager
(kind ``override``) and the replay engine (kind ``replay``); readers: ``audit`` (to stay
idempotent) and ``audit_info``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket


def operator_identity(explicit=None, environ=None):
    """Who is acting, for override ledgers and audit records (the seed's audit hooks).

    The explicit option, else ``$CEPTRA_ACTOR``, else ``$CEPTRA_OPERATOR``, else ``<user>@<host>``.
    """
    if explicit:
        return str(explicit)
    env = os.environ if environ is None else environ
    for name in ("CEPTRA_ACTOR", "CEPTRA_OPERATOR"):
        if env.get(name):
            return env[name]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = env.get("USER") or "uid-%d" % os.getuid()
    return "%s@%s" % (user, socket.gethostname())


def write_record(client, kind, details):
    """POST one record; returns the record as the cluster stored it (``{}`` if it said nothing).

    Raises the client's CeptraError when the call fails (e.g. 403: the identity may not write
    audit records); best-effort writers turn that into a warning themselves.
    """
    response = client.request("POST", "audit", body={"kind": kind, "details": details})
    body = response.json if isinstance(response.json, dict) else {}
    return body["record"] if isinstance(body.get("record"), dict) else body


def read_records(client, kind=None, since=None):
    """The records the cluster returns for ``kind`` / ``since`` (both optional filters)."""
    body = client.get_json("audit", query={"since": since, "kind": kind})
    records = body.get("records") if isinstance(body, dict) else body
    return [record for record in records if isinstance(record, dict)] if isinstance(records, list) else []


def filter_records(records, kind=None, actor=None, record_id=None, limit=None):
    """Apply the filters a server may not know (``actor``, ``record_id``) and keep the last ``limit``."""
    out = []
    for record in records:
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        if (kind is not None and record.get("kind") != kind) or (actor is not None and record.get("actor") != actor):
            continue
        if record_id is not None and details.get("record_id") != record_id:
            continue
        out.append(record)
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


def derived_record_id(kind, details):
    """A stable id for a record's content: the same kind and details give the same id."""
    canonical = json.dumps({"kind": kind, "details": details}, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def find_record(client, kind, record_id):
    """The newest record of ``kind`` whose ``details.record_id`` is ``record_id``, or None."""
    matches = filter_records(read_records(client, kind=kind), kind=kind, record_id=record_id)
    return matches[-1] if matches else None
