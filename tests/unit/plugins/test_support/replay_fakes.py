"""In-memory stand-ins for the replay engine's historic source and cursor store, and
builders of historic data (events in memory, SQLite history files).

They implement the engine's real interfaces with its real record types (``HistoricEvent``,
``Cursor``, the ``CursorStore`` base), so the run, the sender and the modules are tested
exactly as they run against SQLite or PostgreSQL. The cluster side is
``control_plane.ControlPlane``.
"""

import json
import sqlite3
import threading

from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import Cursor, CursorStore
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent

HISTORY_SCHEMA = """
CREATE TABLE ceptra_history (
  part_id TEXT NOT NULL, raft_index BIGINT, event_time_ns BIGINT NOT NULL, event_id TEXT NOT NULL,
  partition_key TEXT NOT NULL, schema_key TEXT NOT NULL, payload TEXT NOT NULL, flags TEXT);
"""


def make_event(part_id, i, **payload):
    """Event number ``i`` of a partition, built in memory (no ``wire`` line: the general encoding path)."""
    event = {"event_id": "h-%s-%06d" % (part_id, i), "part_id": str(part_id),
             "partition_key": "k-%d" % (i % 7), "ts_ns": 1_700_000_000_000_000_000 + i * 1000,
             "schema_key": "metric_sample_v1",
             "payload": dict({"metric": "m", "labels": {}, "value": 1.0}, **payload)}
    return HistoricEvent(str(part_id), (i,), i, event, 100, None)


def bad_row(part_id, i, error="payload is not valid JSON"):
    """A malformed row at position ``i`` (what a source reports for a payload that does not parse)."""
    return HistoricEvent(str(part_id), (i,), i, None, 10, error)


def write_history(path, parts=2, n=30, bad=()):
    """A SQLite history in the default schema: ``n`` events per partition, event ids
    ``h-<part>-<nnnn>``; ``bad`` holds ``(part, i)`` rows whose payload is not JSON."""
    conn = sqlite3.connect(path)
    conn.executescript(HISTORY_SCHEMA)
    rows = []
    for p in range(parts):
        for i in range(1, n + 1):
            payload = "{not json" if (p, i) in bad else json.dumps({"metric": "m", "labels": {}, "value": i})
            rows.append((str(p), i, 1_700_000_000_000_000_000 + i, "h-%d-%04d" % (p, i), "k%d" % i, "s", payload, None))
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()


class MemorySource(object):
    """A historic source over lists of ``HistoricEvent`` per partition, ordered by position."""

    def __init__(self, events_by_part):
        self.events = {str(k): list(v) for k, v in events_by_part.items()}
        self.reads = 0

    def partitions(self):
        return sorted(self.events)

    def plan(self, part_id, after=None):
        rows = [e for e in self.events.get(str(part_id), []) if after is None or e.position > tuple(after)]
        return {"events": len(rows),
                "first_position": rows[0].position if rows else None,
                "last_position": rows[-1].position if rows else None,
                "min_ts_ns": min((e.event or {}).get("ts_ns", 0) for e in rows) if rows else None,
                "max_ts_ns": max((e.event or {}).get("ts_ns", 0) for e in rows) if rows else None}

    def read(self, part_id, after, after_seq, limit):
        self.reads += 1
        rows = self.events.get(str(part_id), [])
        return [e for e in rows if after is None or e.position > tuple(after)][:limit]

    def read_wire(self, part_id, after, after_seq, limit):
        """The same as ``read``: events built in memory carry no wire line, so the run encodes them from the dict."""
        return self.read(part_id, after, after_seq, limit)

    def close(self):
        pass


class MemoryCursorStore(CursorStore):
    """A cursor store in memory. ``fail_on_commit(part_id, cursor)`` may raise to play a
    worker that dies between the cluster's ack and the cursor commit."""

    def __init__(self):
        self.cursors = {}
        self.paused = {}
        self.groups = {}
        self.commits = 0
        self.lock = threading.Lock()
        self.fail_on_commit = None

    def load(self, run_id, part_id):
        return self.cursors.get((run_id, str(part_id)))

    def commit(self, run_id, part_id, cursor):
        if self.fail_on_commit is not None:
            self.fail_on_commit(part_id, cursor)
        with self.lock:
            self.commits += 1
            self.cursors[(run_id, str(part_id))] = Cursor(*cursor)

    def all(self, run_id):
        return {p: c for (r, p), c in self.cursors.items() if r == run_id}

    def set_paused(self, run_id, paused, reason=""):
        self.paused[run_id] = (bool(paused), reason)

    def _pause_row(self, run_id):
        return self.paused.get(run_id, (False, ""))

    def worker_group(self, run_id):
        return self.groups.get(run_id)

    def register_worker_group(self, run_id, hosts, replace=False):
        if replace or run_id not in self.groups:
            self.groups[run_id] = sorted(hosts)
        return self.groups[run_id]

    def close(self):
        pass
