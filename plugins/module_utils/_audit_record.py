# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: what the audit callback records (identity, AWX job, redaction).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the content of audit-log records.

The callback ``ceptra.backfill.audit`` hands plain values to these functions, so what a
record holds is decided (and unit tested) here:

- :func:`operator_from_vars`: who runs the playbook - AWX's ``awx_user_name``, then
  ``tower_user_name``, then ``schedule:<awx_schedule_name>`` for a scheduled job, then the
  local identity (``_audit.operator_identity``: ``$CEPTRA_ACTOR``, ``$CEPTRA_OPERATOR``,
  ``user@host``).
- :func:`awx_job_from_vars`: the AWX job (id, template, workflow, schedule, launch type).
- :class:`Redactor`: masks secrets in the little free text a record carries.
- :func:`task_record`: the fields of one task result. Module arguments and results are
  never copied: only names, outcome flags, a short failure message (none for ``no_log``
  tasks) and replay progress figures (numbers and states).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity
from ansible_collections.ceptra.backfill.plugins.module_utils._progress_view import compact_progress

MSG_MAX = 300
MASK = "********"

# AWX sets these as extra vars on every job (the tower_* spellings on older releases).
_AWX_JOB_VARS = (
    ("job_id", ("awx_job_id", "tower_job_id")),
    ("job_template_id", ("awx_job_template_id", "tower_job_template_id")),
    ("job_template_name", ("awx_job_template_name", "tower_job_template_name")),
    ("job_launch_type", ("awx_job_launch_type", "tower_job_launch_type")),
    ("workflow_job_id", ("awx_workflow_job_id", "tower_workflow_job_id")),
    ("workflow_job_name", ("awx_workflow_job_name", "tower_workflow_job_name")),
    ("schedule_id", ("awx_schedule_id", "tower_schedule_id")),
    ("schedule_name", ("awx_schedule_name", "tower_schedule_name")),
    ("execution_node", ("awx_execution_node", "tower_execution_node")),
    ("project_revision", ("awx_project_revision", "tower_project_revision")),
)

# Names of variables whose values are secrets (masked wherever they appear in recorded text).
SECRET_NAME = re.compile(r"(token|passw|secret|private_key|api_key|credential)", re.IGNORECASE)
SECRET_ENV = ("CEPTRA_TOKEN", "PGPASSWORD", "ANSIBLE_VAULT_PASSWORD", "AWX_TOKEN", "CONTROLLER_OAUTH_TOKEN",
              "CONTROLLER_PASSWORD", "TOWER_PASSWORD")
_PATTERNS = (
    # PEM private keys (a key file's content pasted into a message)
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL),
     "[private key removed]"),
    # libpq key/value DSNs: password=secret or password='se cret'
    (re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE), r"\1" + MASK),
    # URLs with credentials: scheme://user:secret@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)", re.IGNORECASE), r"\1" + MASK + r"\3"),
    # HTTP authorization headers
    (re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1" + MASK),
    # token=..., "token": "...", password: ...
    (re.compile(r"""(["']?\b(?:token|access_token|api_key|secret|password|passwd)["']?\s*[:=]\s*["']?)"""
                r"""([^\s"',}]+)""", re.IGNORECASE), r"\1" + MASK),
)


# Credentials inside one value: a libpq DSN's password (key/value or URL form) and a URL's
# userinfo (user:secret@ or a lone token@). Group 1 is the credential.
_CREDENTIALS = (
    re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE),
    re.compile(r"\b[a-z][a-z0-9+.-]*://([^\s/?#@]+)@", re.IGNORECASE),
)


def credentials_in(value):
    """The secret strings inside ``value`` (a DSN, a URL): what a module registers as no-log values.

    For ``postgresql://replay:s3cret@db/history`` that is ``replay:s3cret`` and ``s3cret``; for
    ``host=db password='se cret'`` it is ``se cret`` (and the quoted form).
    """
    found = []
    if not isinstance(value, str):
        return found
    for pattern in _CREDENTIALS:
        for match in pattern.finditer(value):
            credential = match.group(1)
            found.append(credential)
            if credential.startswith("'") and credential.endswith("'") and len(credential) > 1:
                found.append(credential[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
            elif ":" in credential and pattern is _CREDENTIALS[1]:
                found.append(credential.split(":", 1)[1])
    # a URL's userinfo is percent-encoded; a library's message may show it decoded
    found.extend([unquote(item) for item in found])
    return sorted({item for item in found if item})


def _text(value):
    return None if value is None else str(value)


def _first(values, names):
    for name in names:
        value = values.get(name)
        if value not in (None, ""):
            return value
    return None


def operator_from_vars(extra_vars, environ=None):
    """Who runs the playbook: AWX user, AWX schedule, else the local identity."""
    extra_vars = extra_vars or {}
    user = _first(extra_vars, ("awx_user_name", "tower_user_name"))
    if user is not None:
        return str(user)
    schedule = _first(extra_vars, ("awx_schedule_name", "tower_schedule_name"))
    if schedule is not None:
        return "schedule:%s" % schedule
    return operator_identity(environ=environ)


def awx_job_from_vars(extra_vars):
    """The AWX job's meta variables present in ``extra_vars`` ({} outside AWX)."""
    extra_vars = extra_vars or {}
    job = {}
    for key, names in _AWX_JOB_VARS:
        value = _first(extra_vars, names)
        if value is not None:
            job[key] = value if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return job


class Redactor(object):
    """Masks secrets in text: known secret values, then secret-looking patterns."""

    def __init__(self, secrets=()):
        values = set()
        for value in secrets:
            if isinstance(value, str) and len(value) >= 6:
                values.add(value)
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted(values, key=len, reverse=True)

    @classmethod
    def from_context(cls, extra_vars=None, environ=None):
        """Secrets from the environment (``CEPTRA_TOKEN``, ``PGPASSWORD``, ...) and extra vars with secret names."""
        found = []
        for name in SECRET_ENV:
            if environ and environ.get(name):
                found.append(environ[name])
        found.extend(_secret_values(extra_vars or {}))
        return cls(found)

    def text(self, value, limit=None):
        """``value`` as text with secrets masked, cut to ``limit`` characters."""
        if value is None:
            return None
        out = str(value)
        for secret in self.secrets:
            out = out.replace(secret, MASK)
        for pattern, repl in _PATTERNS:
            out = pattern.sub(repl, out)
        if limit is not None and len(out) > limit:
            out = out[:limit - 3] + "..."
        return out


def _secret_values(value, depth=0):
    """Strings under secret-named keys, at any depth of dicts and lists."""
    if depth > 6:
        return []
    if isinstance(value, dict):
        out = []
        for name, item in value.items():
            out.extend(_strings(item) if SECRET_NAME.search(str(name)) else _secret_values(item, depth + 1))
        return out
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _secret_values(item, depth + 1)]
    return []


def _strings(value, depth=0):
    if depth > 4:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item, depth + 1)]
    return []


def failure_message(result, redactor):
    """A short, redacted failure message from a task result (None when there is none)."""
    if not isinstance(result, dict):
        return None
    msg = result.get("msg")
    if not msg and isinstance(result.get("results"), list):   # a loop: the first failed item's message
        for item in result["results"]:
            if isinstance(item, dict) and item.get("failed") and item.get("msg"):
                msg = item["msg"]
                break
    if not msg and result.get("stderr"):
        msg = result["stderr"]
    if not msg:
        return None
    return redactor.text(" ".join(str(msg).split()), limit=MSG_MAX)


def task_record(status, play, role, task, host, module, result, check_mode, no_log, redactor,
                duration_ms=None, ignore_errors=False):
    """The fields of one task-result record (the chain fields and common fields are added later).

    ``status`` is ``ok``, ``failed``, ``skipped`` or ``unreachable``; ``result`` is the
    (already censored, when ``no_log``) module result.
    """
    result = result if isinstance(result, dict) else {}
    failed = status in ("failed", "unreachable")
    record = {
        "event": "task", "status": status,
        "play": redactor.text(play), "role": _text(role), "task": redactor.text(task), "host": _text(host),
        "module": _text(module), "changed": bool(result.get("changed")), "failed": failed,
        "skipped": status == "skipped", "unreachable": status == "unreachable",
        "ignored": bool(failed and ignore_errors), "check_mode": bool(check_mode), "no_log": bool(no_log),
        "msg": None if no_log or not failed else failure_message(result, redactor),
    }
    if duration_ms is not None:
        record["duration_ms"] = int(duration_ms)
    if isinstance(result.get("results"), list):
        record["items"] = len(result["results"])
    progress = None if no_log else compact_progress(result)
    if progress is not None:
        record["progress"] = progress
    return record
