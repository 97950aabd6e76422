"""Helpers of the full-recovery tests: a lab that had a checkpoint and traffic, wiped on some
partitions, the history that archived everything it accepted (with the Raft index it got),
a reference lab that received every event with no wipe, and a live client that retries what
the gate refuses and records when it was refused and admitted."""

import json
import sqlite3
import threading
import time

from ceptra_lab.testing import LabProcess, append_stream

from .replay_lab import DDL, applied_counts, digests, history_rows, lab_json
from .runbook_support.faults import set_fault, wipe

S = 1_000_000_000
PARTS = 4
WIDE_MS = 4 * 3600 * 1000      # the reference lab's L and C: nothing it receives is ever late


def write_history(path, rows, raft_index=True):
    """The archive in the documented schema (raft_index NULL when the history has no surrogate)."""
    conn = sqlite3.connect(path)
    conn.execute(DDL.format(t="ceptra_history"))
    conn.executemany("INSERT INTO ceptra_history VALUES (?,?,?,?,?,?,?,?)",
                     [row if raft_index else (row[0], None) + tuple(row[2:]) for row in rows])
    conn.execute("CREATE INDEX ceptra_history_raft ON ceptra_history (part_id, raft_index)")
    conn.execute("CREATE INDEX ceptra_history_time ON ceptra_history (part_id, event_time_ns, event_id)")
    conn.commit()
    conn.close()


def message(row, replay=False):
    part_id, _index, ts, event_id, key, schema, payload, _flags = row
    msg = {"event_id": event_id, "part_id": part_id, "partition_key": key, "ts_ns": ts, "schema_key": schema,
           "payload": json.loads(payload)}
    if replay:
        msg["flags"] = ["REPLAY"]
    return msg


def feed(lab, rows, check_index=True):
    """Append rows as the cluster once received them, partition by partition, in raft order."""
    for part_id in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == part_id]
        for start in range(0, len(mine), 1000):
            chunk = mine[start:start + 1000]
            answers = append_stream(lab, part_id, [message(r) for r in chunk])
            assert all(a["status"] == "Healthy" for a in answers), answers[:3]
            if check_index:     # the archive's raft_index is the index the cluster assigned
                assert [a["index"] for a in answers] == [r[1] for r in chunk]


class LiveClient(object):
    """Appends live events (ts = now) to every partition of ``lab`` at ``rate`` per partition,
    in order per partition, retrying a refused event until it is admitted; every admitted event
    is also sent to ``reference``. Records per partition when events were refused (and why)
    and admitted."""

    def __init__(self, lab, reference, rate=20.0, parts=PARTS):
        self.lab, self.reference, self.rate = lab, reference, rate
        self.parts = [str(p) for p in range(parts)]
        self.admitted = {p: [] for p in self.parts}     # (time, event_id)
        self.refused = {p: [] for p in self.parts}      # (time, reason)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._drive, args=(p,), daemon=True) for p in self.parts]

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _drive(self, part_id):
        n = 0
        while not self._stop.is_set():
            n += 1
            event = {"event_id": "live-%s-%06d" % (part_id, n), "part_id": part_id, "partition_key": "live-key",
                     "ts_ns": time.time_ns(), "schema_key": "metric_sample_v1",
                     "payload": {"metric": "replay_test_total", "labels": {"player_id": "live"}, "value": 1.0}}
            while not self._stop.is_set():
                answer = append_stream(self.lab, part_id, [event])[0]
                if answer["status"] == "Healthy":
                    self.admitted[part_id].append((time.time(), event["event_id"]))
                    assert append_stream(self.reference, part_id, [event])[0]["status"] == "Healthy"
                    break
                self.refused[part_id].append((time.time(), answer.get("cep_status_reason")))
                time.sleep(0.05)
            time.sleep(1.0 / self.rate)

    def live_count(self, part_id):
        return len(self.admitted[part_id])


class RecoveryLabs(object):
    """Lab ``lab`` (apply capacity limited after the setup, so the replay meets real apply lag)
    that received ``held`` events per partition before a full checkpoint and ``tail`` after it,
    then lost the WAL of the ``wiped`` partitions (``{part_id: drop_checkpoint}``);
    ``reference`` received the same events, wide L and C first, and no wipe. ``history`` is the
    archive (SQLite; without the Raft index surrogate when ``raft_index`` is false).
    ``lab_options`` go to the lab's LabProcess (e.g. ``tls_dir`` for a lab that speaks mutual TLS)."""

    def __init__(self, tmp_path, wiped=None, held=1500, tail=1500, raft_index=True, apply_capacity=1500.0,
                 **lab_options):
        self.tmp_path = tmp_path
        self.wiped = dict(wiped or {"1": False, "3": False})
        self.held, self.per_part = held, held + tail
        self.rows = history_rows(PARTS, self.per_part, time.time_ns() - 20 * 60 * S)
        self.history = str(tmp_path / "history.db")
        write_history(self.history, self.rows, raft_index=raft_index)
        # a generous start-up timeout: on a loaded 2-core machine a lab took 12 s to start
        self.lab = LabProcess(partitions=PARTS, test_mode=True, startup_timeout=90, **lab_options).__enter__()
        self.reference = LabProcess(partitions=PARTS, test_mode=True, startup_timeout=90).__enter__()
        status, _h, body = self.reference.request(
            "PATCH", "/v1/config", {"lateness_allowance_ms": WIDE_MS, "correction_horizon_ms": WIDE_MS},
            role="operator")
        assert status == 200, body
        feed(self.reference, self.rows, check_index=False)
        feed(self.lab, [r for r in self.rows if r[1] <= held])
        assert self.lab.request("POST", "/v1/test/checkpoint", {})[0] == 200
        feed(self.lab, [r for r in self.rows if r[1] > held])
        applied_counts(self.lab)
        for part_id, drop_checkpoint in sorted(self.wiped.items()):
            wipe(self.lab, part_id, drop_checkpoint=drop_checkpoint)
        if apply_capacity:
            set_fault(self.lab, apply_capacity=apply_capacity)

    def close(self):
        self.lab.stop()
        self.reference.stop()

    def vars(self):
        """What an operator gives scenario_full for this lab (connection through extra vars)."""
        return {"ceptra_url": self.lab.url, "ceptra_token": self.lab.tokens["operator"],
                "full_recovery_source": {"type": "sqlite", "path": self.history},
                "full_recovery_cursor_store": {"type": "sqlite", "path": str(self.tmp_path / "cursors.db")}}

    def audit(self, kind):
        return lab_json(self.lab, "/v1/audit?kind=%s" % kind)["records"]

    def gate_opened_at(self):
        """{part_id: time its gate was opened} from the ingress_gate audit records."""
        opened = {}
        for record in self.audit("ingress_gate"):
            if record["details"]["action"] == "open":
                for part_id in record["details"]["part_ids"]:
                    opened.setdefault(part_id, record["ts"])
        return opened

    def replay_done_at(self):
        """{part_id: time its replay finished} from the replay engine's partition_done records."""
        return {r["details"]["part_id"]: r["ts"] for r in self.audit("replay")
                if r["details"].get("event") == "partition_done"}

    def assert_matches_reference(self, live_counts):
        """The lab's snapshots equal the reference's, and every partition applied its distinct history
        plus ``live_counts[part_id]`` live events: nothing the baseline held or a retry sent applied twice."""
        lab_digests, ref_digests, lab_counts, ref_counts = self.compare()
        assert lab_digests == ref_digests
        for part_id in map(str, range(PARTS)):
            assert lab_counts[part_id] == ref_counts[part_id] == self.per_part + live_counts.get(part_id, 0)

    def compare(self):
        """(digests of lab, of reference, applied indexes of lab, of reference) once both applied all."""
        part_ids = [str(p) for p in range(PARTS)]
        lab_counts, ref_counts = applied_counts(self.lab, 60), applied_counts(self.reference, 60)
        return digests(self.lab, part_ids), digests(self.reference, part_ids), lab_counts, ref_counts
