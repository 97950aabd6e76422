"""Benchmark: the replay throttle against a lab with limited apply capacity.

Starts ``ceptra-lab serve --apply-capacity C`` (events/s per partition), replays a historic
set with the throttle on (defaults: apply-lag threshold 200 ms), and meanwhile polls
``/readyz`` every 100 ms. Prints, over the steady part of the run (after a warm-up, until
the first partition finishes):

- apply_lag_ms p50 / p99 / max over all partition samples      (target p99 <= 200)
- capacity utilisation = events applied per second / (C x partitions)   (target >= 0.90)

    .venv/bin/python benchmarks/bench_replay_throttle.py [--capacity 1500] [--partitions 4]
        [--seconds 30] [--live-rate 0] [--quick]
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import threading
import time


from bench_source_read import seed_sqlite  # noqa: E402
from ceptra_lab.testing import LabProcess  # noqa: E402

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=float, default=1500.0, help="apply capacity, events/s per partition")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="intended run length (sizes the data set)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from the statistics")
    parser.add_argument("--live-rate", type=float, default=0.0, help="live events/s flowing at the same time")
    parser.add_argument("--setpoint", type=float, default=None, help="throttle setpoint_ratio (default: the runner's)")
    parser.add_argument("--quick", action="store_true", help="15 s run")
    args = parser.parse_args(argv)
    seconds = 15.0 if args.quick else args.seconds
    events = int(args.capacity * args.partitions * seconds)
    workdir = tempfile.mkdtemp(prefix="bench_throttle_")
    atexit.register(shutil.rmtree, workdir, True)
    db = os.path.join(workdir, "history.db")
    seed_sqlite(db, events, args.partitions)
    spec = {"type": "sqlite", "path": db}
    print("throttle benchmark: capacity %.0f events/s x %d partitions, %d events, live %.0f events/s"
          % (args.capacity, args.partitions, events, args.live_rate))
    with LabProcess(partitions=args.partitions, test_mode=True, apply_capacity=args.capacity) as lab:
        client = CeptraClient(lab.url, token=lab.tokens["operator"], timeout=60)
        samples = []            # (t, apply_lag_ms) for every partition sample
        applied = []            # (t, total applied_index)
        stop = threading.Event()

        def poll():
            observer = CeptraClient(lab.url, token=lab.tokens["observer"], timeout=10)
            while not stop.is_set():
                now = time.monotonic()
                doc = observer.request("GET", "readyz", expected=(200, 503)).json
                for part in doc["partitions"].values():
                    samples.append((now, float(part["metrics"]["apply_lag_ms"])))
                state = observer.get_json("state")
                applied.append((now, sum(p["applied_index"] for p in state["partitions"])))
                stop.wait(0.1)

        live_totals = {}
        if args.live_rate:
            from ceptra_lab.traffic import live
            import io
            feeder = threading.Thread(target=lambda: live_totals.update(live(
                lab.url, lab.tokens["ingest"], rate=args.live_rate, duration=seconds, partitions=args.partitions,
                out=io.StringIO())), daemon=True)
            feeder.start()
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        store = open_cursor_store({"type": "sqlite", "path": os.path.join(workdir, "cursors.db")})
        source = open_source(spec)
        run = rr.ReplayRun({"run_id": "throttle", "cp_audit": False, "setpoint_ratio": args.setpoint}, client, source, store,
                           source_factory=lambda: open_source(spec))
        first_done = {}

        def watch(snap):
            for pid, part in snap["partitions"].items():
                if part["status"] == "done" and "t" not in first_done:
                    first_done["t"] = time.monotonic()
        run.progress_callback = watch
        started = time.monotonic()
        result = run.run()
        finished = time.monotonic()
        stop.set()
        poller.join()
    end = first_done.get("t", finished)
    window = [(t, lag) for t, lag in samples if started + args.warmup <= t <= end]
    lags = [lag for _, lag in window]
    points = [(t, n) for t, n in applied if started + args.warmup <= t <= end]
    if len(points) >= 2 and points[-1][0] > points[0][0]:
        rate = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
    else:
        rate = float("nan")
    capacity = args.capacity * args.partitions
    print("run: %d events in %.1f s, done=%s, aborted=%s" % (result["events_done"], finished - started,
                                                          result["done"], result["aborted"]))
    print("steady window %.1f s (%d lag samples)" % (end - started - args.warmup, len(lags)))
    print("apply_lag_ms p50 %.0f  p99 %.0f  max %.0f   (target p99 <= 200)"
          % (percentile(lags, 0.5), percentile(lags, 0.99), max(lags) if lags else float("nan")))
    print("applied %.0f events/s of %.0f capacity: utilisation %.2f   (target >= 0.90)"
          % (rate, capacity, rate / capacity))
    times = sorted({t for t, _ in window})
    gaps = [b - a for a, b in zip(times, times[1:]) if b - a > 0.25]
    print("stalls: %d poll gap(s) > 250 ms (longest %.2f s) - the lab or this process did not run; "
          "load average %.1f" % (len(gaps), max(gaps) if gaps else 0.0, os.getloadavg()[0]))
    if live_totals:
        print("live events accepted during the run: %d (refused %d)" % (live_totals["healthy"], live_totals["refused"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
