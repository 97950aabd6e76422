"""Benchmark: the replay worker's peak memory does not grow with the data set (1 M vs 4 M events).

For each size a SQLite historic set is seeded (streamed, not held in memory), then a fresh
child process replays it completely with ``ReplayRun`` (real source, real SQLite cursor
store with one commit per batch, JSONL batch audit) into a stub cluster that acknowledges
every event as soon as it is encoded, and reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
The stub keeps the lab (whose WAL is in memory) out of the measurement: this is the
worker's memory.

    .venv/bin/python benchmarks/bench_replay_memory.py [--quick]     # quick: 100 k vs 400 k
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


from bench_source_read import seed_sqlite  # noqa: E402


class AckEverything(object):
    """A cluster stand-in with the shared client's interface: every append is Healthy; nothing is stored."""

    HEALTHY = json.dumps({"status": "Healthy", "cep_credit_hint": {"client_window_size": 1024,
                                                                   "retry_backoff_ms": 0}}).encode() + b"\n"

    def post_ndjson_raw(self, route, body, *, params=None, query=None, expected=None):
        from ansible_collections.ceptra.backfill.plugins.module_utils._client import Headers, Response
        return Response(200, Headers(), self.HEALTHY * body.count(b"\n"))

    def get_json(self, route, **kw):
        return {"partitions": [{"part_id": "0", "replay_sessions": {}}]}

    def request(self, *args, **kw):
        raise RuntimeError("not used: throttle and CP audit are off")

    def close(self):
        pass


def child(db, workdir):
    """Replay ``db`` completely; print {"events", "seconds", "maxrss_kb"} as JSON."""
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

    spec = {"type": "sqlite", "path": db}
    store = open_cursor_store({"type": "sqlite", "path": os.path.join(workdir, "cursors.db")})
    run = rr.ReplayRun({"run_id": "mem", "throttle": False, "cp_audit": False, "batch_events": 4096,
                        "audit_file": os.path.join(workdir, "audit.jsonl")},
                       AckEverything(), open_source(spec), store, source_factory=lambda: open_source(spec))
    started = time.perf_counter()
    result = run.run()
    seconds = time.perf_counter() - started
    assert result["done"], result
    print(json.dumps({"events": result["events_done"], "seconds": seconds,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure(events, partitions):
    workdir = tempfile.mkdtemp(prefix="bench_replay_mem_")
    try:
        db = os.path.join(workdir, "history.db")
        t0 = time.perf_counter()
        seed_sqlite(db, events, partitions)
        seeded = time.perf_counter() - t0
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", db, workdir],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("child failed:\n" + proc.stderr[-3000:])
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["seed_seconds"] = seeded
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 k vs 400 k events instead of 1 M vs 4 M")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--child", nargs=2, metavar=("DB", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    small, large = (100_000, 400_000) if args.quick else (1_000_000, 4_000_000)
    results = {}
    for events in (small, large):
        results[events] = r = measure(events, args.partitions)
        print("%9d events: peak RSS %.1f MiB, replayed in %.1f s (%.0f events/s; seeding took %.1f s)"
              % (events, r["maxrss_kb"] / 1024.0, r["seconds"], r["events"] / r["seconds"], r["seed_seconds"]))
    ratio = results[large]["maxrss_kb"] / float(results[small]["maxrss_kb"])
    print("peak memory ratio %d / %d events = %.2f   (flat means ~1.0; data grew 4x)" % (large, small, ratio))
    print("load average %.1f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
