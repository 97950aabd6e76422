# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit callback: every task result of a run as a hash-chained JSON line; replay progress on each retry."""

from __future__ import annotations

DOCUMENTATION = r"""
name: audit
type: notification
short_description: Append-only, hash-chained audit log of every task; replay progress each round
version_added: 0.1.0
description:
  - Appends one JSON line per task result (play, role, task, host, module, changed, failed,
    skipped, check mode, a short message on failure, the run id, the operator and the AWX job)
    to O(log_path), with C(O_APPEND), an exclusive lock and an fsync per record.
  - Records are hash-chained (C(seq), C(prev), C(hash)), so an edited, deleted or reordered
    record is detected by M(ceptra.backfill.audit_chain_info). Send the chain head to the
    control-plane audit log at the end of a run (an anchor) so that a cut tail is detected too.
  - The run also gets a C(run_start) record (operator, AWX job, playbook, check mode) and a
    C(run_end) record (the play recap per host).
  - The operator is AWX's C(awx_user_name), else C(tower_user_name), else
    C(schedule:<awx_schedule_name>), else E(CEPTRA_ACTOR), E(CEPTRA_OPERATOR) or the local
    C(user@host).
  - Never records module arguments or results. A C(no_log) task gets no message; messages are
    cut to 300 characters and secrets (DSN passwords, URL credentials, bearer tokens, private
    keys, the values of secret-named extra vars and of E(CEPTRA_TOKEN) or E(PGPASSWORD)) are masked.
  - While a C(ceptra.backfill.historic_replay) loop retries, prints one line per partition each
    round (events done/total, rate, ETA, apply and replication lag, state) and records the
    same figures (C(retry) records), which the M(ceptra.backfill.report) module draws.
  - Exports E(CEPTRA_AUDIT_LOG) and E(CEPTRA_AUDIT_RUN_ID) to the tasks it runs on the
    controller, so M(ceptra.backfill.audit_log_check) can prove at the start of a scenario that
    this run is being recorded (Ansible only warns when a callback fails).
  - Enable it by its full name, for example C(ANSIBLE_CALLBACKS_ENABLED=ceptra.backfill.audit).
    See C(docs/audit-and-report.md) in the collection.
author:
  - ceptra.backfill contributors (@ceptra)
requirements:
  - enabled in configuration (C(callbacks_enabled) or E(ANSIBLE_CALLBACKS_ENABLED))
options:
  log_path:
    description:
      - The audit log file (JSON Lines). Created with mode C(0640) when missing; its directory must exist.
      - Several runs and several controllers processes may share one log; the chain continues.
    type: path
    default: ~/.ansible/ceptra-backfill-audit.jsonl
    env:
      - name: CEPTRA_AUDIT_LOG
    ini:
      - section: callback_ceptra_audit
        key: log_path
  run_id:
    description:
      - The id of this run in every record. Default - C(awx-job-<id>) under AWX, else the start
        time and a random suffix (C(20261127T101112Z-3f9a2c)).
    type: str
    env:
      - name: CEPTRA_AUDIT_RUN_ID
    ini:
      - section: callback_ceptra_audit
        key: run_id
  show_progress:
    description:
      - Print the per-partition progress lines of replay results (on each retry of the loop and
        with the final result).
    type: bool
    default: true
    env:
      - name: CEPTRA_AUDIT_SHOW_PROGRESS
    ini:
      - section: callback_ceptra_audit
        key: show_progress
"""

import datetime
import os
import secrets
import socket
import time

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.release import __version__ as ansible_version

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_chain import AuditChainError, ChainWriter
from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_record as records
from ansible_collections.ceptra.backfill.plugins.module_utils._progress_view import compact_progress, progress_lines


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _native(value, depth=0):
    """Plain Python values (Ansible 2.19 hands tagged str/int subclasses to callbacks)."""
    if depth > 6:
        return None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _native(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_native(v, depth + 1) for v in value]
    return str(value)


class CallbackModule(CallbackBase):
    """Writes the chained audit log and prints replay progress."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "ceptra.backfill.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self.writer = None
        self.run_id = None
        self.operator = None
        self.awx = {}
        self.redactor = records.Redactor()
        self.playbook = None
        self.play = None
        self.started = False
        self.lost = 0
        self._warned = set()
        self._task_started = {}

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.writer = ChainWriter(self.get_option("log_path"))

    # ------------------------------------------------------------------ writing
    def _write(self, fields):
        if self.writer is None or not self.started:
            return None
        record = {"time": _now(), "run": self.run_id, "operator": self.operator}
        job = {k: self.awx[k] for k in ("job_id", "job_template_name") if k in self.awx}
        if job:
            record["awx"] = job
        record.update(fields)
        try:
            return self.writer.append(record)
        except (AuditChainError, OSError) as exc:
            self.lost += 1
            message = "ceptra.backfill.audit: record not written: %s" % exc
            if message not in self._warned:
                self._warned.add(message)
                self._display.warning(message)
            return None

    def _start_run(self, play):
        manager = play.get_variable_manager() if hasattr(play, "get_variable_manager") else None
        extra_vars = _native(dict(manager.extra_vars)) if manager is not None else {}
        self.operator = records.operator_from_vars(extra_vars)
        self.awx = records.awx_job_from_vars(extra_vars)
        self.redactor = records.Redactor.from_context(extra_vars, os.environ)
        self.run_id = self.get_option("run_id")
        if not self.run_id:
            if "job_id" in self.awx:
                self.run_id = "awx-job-%s" % self.awx["job_id"]
            else:
                self.run_id = "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), secrets.token_hex(3))
        self.started = True
        self._write({
            "event": "run_start", "playbook": self.playbook, "check_mode": bool(context.CLIARGS.get("check")),
            "controller": socket.gethostname(), "pid": os.getpid(), "ansible_version": ansible_version,
            "awx_job": self.awx or None,
        })
        # Tasks run on the controller (local connection, delegate_to: localhost) inherit these:
        # audit_log_check proves with them that this run is being recorded.
        os.environ["CEPTRA_AUDIT_LOG"] = self.writer.path
        os.environ["CEPTRA_AUDIT_RUN_ID"] = self.run_id

    # ------------------------------------------------------------------ playbook events
    def v2_playbook_on_start(self, playbook):
        name = getattr(playbook, "_file_name", None)
        self.playbook = os.path.abspath(name) if name else None

    def v2_playbook_on_play_start(self, play):
        if not self.started:
            self._start_run(play)
        self.play = play.get_name()

    def v2_runner_on_start(self, host, task):
        self._task_started[(host.get_name(), task._uuid)] = time.monotonic()

    def v2_runner_on_ok(self, result):
        self._task_result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_result(result, "failed", ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._task_result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._task_result(result, "unreachable")

    def v2_runner_retry(self, result):
        data = result._result
        if data.get("_ansible_no_log") or result._task.no_log:
            return
        progress = compact_progress(data)
        if progress is None:
            return
        host = result._host.get_name()
        attempt = data.get("attempts")
        self._show(progress, host, attempt)
        self._write({"event": "retry", "play": self.redactor.text(self.play), "task": self.redactor.text(
            result._task.get_name()), "host": host, "module": self._module_name(result._task),
            "attempt": attempt, "retries": data.get("retries"), "progress": progress})

    def v2_playbook_on_stats(self, stats):
        recap = {host: stats.summarize(host) for host in sorted(stats.processed.keys())}
        self._write({"event": "run_end", "recap": _native(recap), "lost_records": self.lost})
        if self.lost:
            self._display.error("ceptra.backfill.audit: %d record(s) of run %s were NOT written to %s"
                                % (self.lost, self.run_id, self.writer.path if self.writer else "-"))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _module_name(task):
        action = task.action
        if action and "{" not in action:
            return task.resolved_action or action
        return action

    def _show(self, progress, host, attempt=None):
        if self.get_option("show_progress"):
            self._display.display("\n".join(progress_lines(progress, host=host, attempt=attempt)))

    def _task_result(self, result, status, ignore_errors=False):
        task = result._task
        host = result._host.get_name()
        data = result._result
        no_log = bool(task.no_log) or bool(data.get("_ansible_no_log"))
        started = self._task_started.pop((host, task._uuid), None)
        role = task._role.get_name() if task._role is not None else None
        record = records.task_record(
            status, self.play, role, task.get_name(), host, self._module_name(task), data,
            check_mode=task.check_mode, no_log=no_log, redactor=self.redactor,
            duration_ms=(time.monotonic() - started) * 1000 if started is not None else None,
            ignore_errors=ignore_errors)
        record["path"] = task.get_path() or None
        if record.get("progress") and status == "ok":
            self._show(record["progress"], host)
        self._write(record)
