# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the audit trail of a replay run.

- ``BatchAuditLog``: a local append-only JSON Lines file (``audit_file``), one record per
  committed batch and per row passed without sending (a skipped copy, a dead-lettered row)
  or a stop;
- ``SummaryRecords``: records of kind ``replay`` in the control plane's audit log
  (``run_start``, ``partition_done``, ``partition_stopped``, ``run_end``), written through
  ``_audit.write_record``. A refused write (e.g. an ingest-only identity) is a warning.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from ansible_collections.ceptra.backfill.plugins.module_utils._audit import write_record
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError


class BatchAuditLog(object):
    """Local append-only JSONL audit: one record per replay batch (thread-safe)."""

    def __init__(self, path, run_id, operator):
        self.path = path
        self.run_id = run_id
        self.operator = operator
        self._lock = threading.Lock()
        self._handle = open(path, "a") if path else None

    def record(self, part_id, first, last, events, nbytes, started_at, outcome, **extra):
        """Append one batch record; ``first``/``last`` are HistoricEvents (or None)."""
        if self._handle is None:
            return
        rec = {
            "ts": time.time(), "run_id": self.run_id, "part_id": str(part_id), "operator": self.operator,
            "first_position": list(first.position) if first is not None and first.position is not None else None,
            "last_position": list(last.position) if last is not None and last.position is not None else None,
            "seq_first": first.seq if first is not None else None,
            "seq_last": last.seq if last is not None else None,
            "events": events, "bytes": nbytes, "started_at": started_at, "outcome": outcome,
        }
        rec.update(extra)
        line = json.dumps(rec, sort_keys=True, default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()

    def close(self):
        if self._handle is not None:
            with self._lock:
                try:
                    os.fsync(self._handle.fileno())
                except OSError:
                    pass
                self._handle.close()
                self._handle = None


def cp_audit(client, details, warnings):
    """Write one ``replay`` summary record; a failure becomes a warning (returns False), not a failed run."""
    try:
        write_record(client, "replay", details)
        return True
    except CeptraError as exc:
        warnings.append("could not write the CP audit record (%s): %s" % (details.get("event"), exc.message))
        return False


class SummaryRecords(object):
    """The summary records of one run; nothing is written when ``enabled`` is false (``cp_audit``)."""

    def __init__(self, client, run_id, operator, enabled, warnings):
        self.client = client
        self.run_id = run_id
        self.operator = operator
        self.enabled = enabled
        self.warnings = warnings

    def write(self, event, **details):
        """Write the ``event`` record with ``details`` (run, operator, host and time are added)."""
        if not self.enabled:
            return False
        record = {"event": event, "run_id": self.run_id, "operator": self.operator, "host": socket.gethostname(),
                  "ts": time.time()}
        record.update(details)
        return cp_audit(self.client, record, self.warnings)
