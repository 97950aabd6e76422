"""In-memory fakes of the replay seams (source, cursor store, append stream) for unit tests.

They follow docs/developers/interfaces.md "Replay engine seams" so the runner and sender
are tested without the real SQLite/PostgreSQL pieces or a lab.
"""

import threading
from typing import NamedTuple


class HistoricEvent(NamedTuple):
    part_id: str
    position: tuple
    seq: int
    event: dict
    raw_size: int
    error: str


class Cursor(NamedTuple):
    position: tuple
    seq: int
    events_done: int
    bytes_done: int
    status: str
    updated_at: float
    counts: dict = None


def make_event(part_id, i, **payload):
    event = {"event_id": "h-%s-%06d" % (part_id, i), "part_id": str(part_id),
             "partition_key": "k-%d" % (i % 7), "ts_ns": 1_700_000_000_000_000_000 + i * 1000,
             "schema_key": "metric_sample_v1",
             "payload": dict({"metric": "m", "labels": {}, "value": 1.0}, **payload)}
    return HistoricEvent(str(part_id), (i,), i, event, 100, None)


def bad_row(part_id, i, error="payload is not valid JSON"):
    return HistoricEvent(str(part_id), (i,), i, None, 10, error)


class FakeSource(object):
    """Events per partition as lists of HistoricEvent, ordered by position."""

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
        out = [e for e in rows if after is None or e.position > tuple(after)]
        return out[:limit]

    def close(self):
        pass


class FakeCursorStore(object):
    def __init__(self):
        self.cursors = {}
        self.paused = {}
        self.commits = 0
        self.lock = threading.Lock()
        self.fail_on_commit = None   # callable(part_id, cursor) -> raise to simulate a crash

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
        self.paused[run_id] = paused

    def is_paused(self, run_id):
        return self.paused.get(run_id, False)

    def close(self):
        pass


class FakeCluster(object):
    """A client double: append stream with replay-session dedup and per-event scripted
    answers, /readyz, /v1/state and /v1/audit.

    ``script`` maps event_id -> list of responses to give (consumed one per attempt);
    when exhausted (or absent) the event is committed (Healthy).
    """

    def __init__(self, sessions=True, window=64):
        self.sessions = sessions
        self.window = window
        self.applied = {}              # part_id -> list of event_ids in apply order
        self.last_seq = {}             # session -> last seq
        self.seen_ids = set()
        self.script = {}
        self.requests = []             # (part_id, [seqs or event_ids])
        self.audit = []
        self.state_calls = 0
        self.lock = threading.Lock()
        self.fail_requests = 0         # raise a transport error for the next N requests
        self.lags = {}

    def _append(self, part_id, msg):
        eid = msg["event_id"]
        queue = self.script.get(eid)
        if queue:
            resp = dict(queue.pop(0))
            resp.setdefault("event_id", eid)
            return resp
        hint = {"client_window_size": self.window, "retry_backoff_ms": 40}
        session = msg.get("replay_session")
        if self.sessions and session is not None:
            if msg["replay_seq"] <= self.last_seq.get(session, 0):
                return {"event_id": eid, "status": "Healthy", "duplicate": True, "cep_credit_hint": hint}
            self.last_seq[session] = msg["replay_seq"]
        elif eid in self.seen_ids:
            return {"event_id": eid, "status": "Healthy", "duplicate": True, "cep_credit_hint": hint}
        self.seen_ids.add(eid)
        self.applied.setdefault(part_id, []).append(eid)
        return {"event_id": eid, "status": "Healthy", "cep_credit_hint": hint}

    def post_ndjson(self, route, lines, *, params=None, query=None, expected=(200,)):
        import json
        assert route == "append_stream"
        part_id = params["part_id"]
        with self.lock:
            if self.fail_requests:
                self.fail_requests -= 1
                err = RuntimeError("connection reset")
                err.status = None
                err.message = "connection reset"
                raise err
            msgs = [json.loads(line) for line in lines]
            self.requests.append((part_id, [m.get("replay_seq", m["event_id"]) for m in msgs]))
            out = []
            for msg in msgs:
                assert "REPLAY" in msg["flags"]
                resp = self._append(part_id, msg)
                out.append(resp)
                if resp["status"] != "Healthy" and resp.get("stop_stream", True):
                    # like the lab: the rest of the stream is refused too
                    rest = [{"event_id": m["event_id"], "status": "TransientBackpressure",
                             "cep_status_reason": "TRANSIENT_RETRY"} for m in msgs[len(out):]]
                    out.extend(rest)
                    break
            return out

    def request(self, method, route, *, params=None, query=None, body=None, headers=None,
                idempotency_key=None, expected=(200,)):
        class Resp(object):
            pass
        resp = Resp()
        resp.status = 200
        if route == "audit" and method == "POST":
            self.audit.append(body)
            resp.json = {"id": len(self.audit)}
        elif route == "readyz":
            resp.json = {"partitions": {p: {"ready": True, "metrics": {"apply_lag_ms": lag[0], "replication_lag_ms": lag[1]}}
                                        for p, lag in self.lags.items()}}
        elif route == "state":
            self.state_calls += 1
            resp.json = {"cluster": {"partitions": 4},
                         "partitions": [{"part_id": str(p), "leader": "lab-0",
                                         "replay_sessions": {} if self.sessions else None}
                                        for p in range(4)]}
            if not self.sessions:
                for p in resp.json["partitions"]:
                    p.pop("replay_sessions")
        else:
            raise AssertionError("unexpected route %s" % route)
        return resp

    def get_json(self, route, **kw):
        return self.request("GET", route, **kw).json
