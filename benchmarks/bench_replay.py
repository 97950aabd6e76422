"""Benchmark: replay worker throughput, measured in one run against its ceilings.

Prints, for one synthetic historic set in SQLite (default schema, 4 partitions):

- source read alone   (``bench_source_read.measure_source_read``: the worker's reader,
                       ``read_wire()`` pages of ``BATCH_EVENTS`` inside ``wire.bulk_gc()``,
                       no sending) and its CPU per event
- lab ingest alone    (the same events pre-encoded, pushed over the NDJSON append stream with
                       the shared client, one thread per partition, window-sized requests;
                       through the same transport the worker's sender uses,
                       ``_replay.wire.post_lines``, so the ceiling is not a slower client;
                       the stock ``post_ndjson`` figure is printed for reference)
- replay worker       (``ReplayRun`` in this process: source -> sender -> cursor commits ->
                       audit, throttle off, source pages of ``BATCH_EVENTS``) and its ratio
                       to the slower of the two above (target >= 0.85); also the ratio of
                       each attempt's worker to the same attempt's ingest (the spread)
- CPU per event (process time) of the reader, the ingest client and the worker, and the
                       worker's budget: reader + ingest client + 1.5 us (issue 16); an
                       instruction count beside them where ``perf stat`` can count them
- replay worker on the same set with 2 % stored copies (a later row of an event under a new
                       raft_index: skipped, not sent) and its ratio to the copy-free worker of
                       the same invocation (target >= 0.90, rows processed per second)
- naive client        (one ``POST /append`` per event, sequential) and worker / naive
- 2 workers vs 1 on 8 partitions (``_replay.cli run`` processes, fan-out w1/w2)
- sources (``bench_source_read.measure_sources``, the same events): copy detection in
                       raft_index order on SQLite and PostgreSQL (target <= 1 us/event added)
                       and a PostgreSQL ``jsonb`` payload column against ``text`` (target
                       <= 1.15x per event); ``--no-postgresql`` leaves PostgreSQL out

Each measurement uses a fresh lab (so no dedup shortcut). Machine: shared, 2 cores; the
lab, the worker and the database compete for them, so read ratios, not absolutes. With
``--repeat N`` (default 3) the source, ingest and worker figures are each measured N times,
interleaved, and the best of each is used (the same rule for all three: noise on a shared
machine only ever slows a run down).

    .venv/bin/python benchmarks/bench_replay.py [--events 200000] [--quick] [--repeat 3]
        [--no-postgresql] [--dsn DSN]

Peak memory from 1 M to 4 M events is ``bench_replay_memory.py`` (it takes longer than this).
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time


from bench_source_read import (  # noqa: E402
    COLLECTIONS, DEFAULT_DSN, measure_source_read_detailed, measure_sources, postgresql_tables, print_source_ratios,
    seed_sqlite)
from ceptra_lab.testing import LabProcess  # noqa: E402

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as rr  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.wire import post_lines  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.sender import encode_event  # noqa: E402
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source  # noqa: E402

CLI = "ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli"
WINDOW = 1024
BATCH_EVENTS = 1024   # worker source page = one request (measured faster than 2048 or 4096 here)
CPU = {}   # client-side CPU microseconds per event, by measurement
CEILING_TARGET = 0.85      # issue 16: worker / slower ceiling
COPIES_TARGET = 0.90       # issue 10: the 2 % copies run within 10 % of the copy-free one
CPU_MARGIN_US = 1.5        # issue 16: worker CPU <= reader CPU + ingest-client CPU + 1.5 us per event


def perf_instructions():
    """A context manager counting this process's user-space instructions with ``perf stat``,
    or None when perf cannot count them here (no perf, or a VM without the counter)."""
    import contextlib
    import signal
    try:
        probe = subprocess.run(["perf", "stat", "-x,", "-e", "instructions:u", "true"], capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if probe.returncode != 0 or "<not" in probe.stderr or "instructions" not in probe.stderr:
        return None

    @contextlib.contextmanager
    def count(box):
        proc = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions:u", "-p", str(os.getpid())],
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)   # perf attaches
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            for line in err.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].strip().isdigit():
                    box.append(int(fields[0]))
    return count


def client_for(lab):
    return CeptraClient(lab.url, token=lab.tokens["operator"], timeout=120)


def applied_total(lab):
    status, _, body = lab.request("GET", "/v1/state", role="observer")
    return sum(p["applied_index"] for p in body["partitions"])


def measure_worker(lab, spec, workdir, tag, cpu_key="worker"):
    """ReplayRun to completion; returns events/s (wall clock, including planning); its CPU per
    event goes to ``CPU[cpu_key]``."""
    client = client_for(lab)
    source = open_source(spec)
    store = open_cursor_store({"type": "sqlite", "path": os.path.join(workdir, "cursors-%s.db" % tag)})
    cfg = {"run_id": "bench-%s" % tag, "throttle": False, "max_window": WINDOW, "batch_events": BATCH_EVENTS,
           "audit_file": os.path.join(workdir, "audit-%s.jsonl" % tag), "cp_audit": False}
    run = rr.ReplayRun(cfg, client, source, store, source_factory=lambda: open_source(spec))
    started, cpu = time.perf_counter(), time.process_time()
    result = run.run()
    seconds = time.perf_counter() - started
    CPU[cpu_key] = (time.process_time() - cpu) / max(1, result["events_done"]) * 1e6
    source.close()
    store.close()
    client.close()
    assert result["done"], result
    return result["events_done"] / seconds, result["events_done"]


def add_copies(source_db, path, every=50):
    """A copy of ``source_db`` plus one stored copy of every ``every``-th row (2 % by default):
    same event_id, event time and payload under a new raft_index. Returns the copies added."""
    shutil.copyfile(source_db, path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO ceptra_history SELECT part_id, raft_index + 1000000000, event_time_ns, event_id,"
                 " partition_key, schema_key, payload, flags FROM ceptra_history WHERE raft_index %% %d = 7" % every)
    added = conn.execute("SELECT changes()").fetchone()[0]
    conn.commit()
    conn.close()
    return added


def measure_ingest(lab, spec, part_ids, stock=False):
    """The same events, read and encoded beforehand, pushed with the shared client (ingest ceiling).

    ``stock``: with ``CeptraClient.post_ndjson`` (json.loads per answer line) instead of the
    sender's transport ``post_lines``.
    """
    source = open_source(spec)
    lines = {}
    for part_id in part_ids:
        lines[part_id] = []
        after, seq = None, 0
        while True:
            page = source.read(part_id, after, seq, 10000)
            if not page:
                break
            lines[part_id].extend(encode_event(ev, "ingest", True) for ev in page)
            after, seq = page[-1].position, page[-1].seq
    source.close()
    total = sum(len(v) for v in lines.values())
    client = client_for(lab)

    def push(part_id):
        data = lines[part_id]
        for offset in range(0, len(data), WINDOW):
            if stock:
                client.post_ndjson("append_stream", data[offset:offset + WINDOW], params={"part_id": part_id})
            else:
                post_lines(client, "append_stream", data[offset:offset + WINDOW], params={"part_id": part_id})

    threads = [threading.Thread(target=push, args=(p,)) for p in part_ids]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    CPU["ingest client (stock)" if stock else "ingest client"] = (time.process_time() - cpu) / max(1, total) * 1e6
    client.close()
    assert applied_total(lab) == total, "ingest-alone run did not apply every event"
    return total / seconds


def measure_naive(lab, spec, limit_events, limit_seconds):
    """One POST /append per event, sequential (what a simple script would do)."""
    source = open_source(spec)
    events = source.read(source.partitions()[0], None, 0, limit_events)
    source.close()
    client = client_for(lab)
    sent = 0
    started = time.perf_counter()
    for ev in events:
        body = dict(ev.event, flags=["REPLAY"], replay_session="naive/0", replay_seq=ev.seq)
        client.request("POST", "append", body=body)
        sent += 1
        if time.perf_counter() - started > limit_seconds:
            break
    seconds = time.perf_counter() - started
    client.close()
    return sent / seconds


def measure_cli_workers(lab, db, workdir, hosts, tag):
    """Run ``len(hosts)`` CLI worker processes together (fan-out); returns events/s overall."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, CEPTRA_URL=lab.url, CEPTRA_TOKEN=lab.tokens["operator"])
    base = [sys.executable, "-m", CLI, "run", "--run-id", "w-%s" % tag, "--source", db, "--cursor-store",
            os.path.join(workdir, "cursors-%s.db" % tag), "--no-throttle", "--quiet", "--no-cp-audit",
            "--max-window", str(WINDOW)]
    before = applied_total(lab)
    started = time.perf_counter()
    procs = []
    for host in hosts:
        extra = ["--worker-hosts", ",".join(hosts), "--this-host", host] if len(hosts) > 1 else []
        procs.append(subprocess.Popen(base + extra, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
    seconds = time.perf_counter() - started
    return (applied_total(lab) - before) / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--quick", action="store_true", help="small data set (40k events), for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="measure source, ingest and worker N times each, keep the best")
    parser.add_argument("--no-postgresql", action="store_true", help="leave the PostgreSQL source figures out")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL for the source figures (default: %(default)s)")
    args = parser.parse_args(argv)
    events = 40000 if args.quick else args.events
    workdir = tempfile.mkdtemp(prefix="bench_replay_")
    atexit.register(shutil.rmtree, workdir, True)
    db4 = os.path.join(workdir, "history4.db")
    db8 = os.path.join(workdir, "history8.db")
    seed_sqlite(db4, events, 4)
    seed_sqlite(db8, events, 8)
    spec = {"type": "sqlite", "path": db4, "order_by": "event_time"}
    copies = add_copies(db4, os.path.join(workdir, "history4-copies.db"))
    copies_spec = dict(spec, path=os.path.join(workdir, "history4-copies.db"))
    parts4 = [str(p) for p in range(4)]
    print("replay benchmark: %d events, 4 partitions (SQLite), window %d, source pages %d, best of %d; "
          "load average at start %.1f" % (events, WINDOW, BATCH_EVENTS, args.repeat, os.getloadavg()[0]))

    runs = {"source": [], "ingest": [], "worker": [], "copies": []}
    cpu = {}
    for attempt in range(max(1, args.repeat)):
        rate, stats = measure_source_read_detailed(spec, parts4, BATCH_EVENTS)
        runs["source"].append(rate)
        cpu["reader"] = min(cpu.get("reader", float("inf")), stats["cpu_us_per_event"])
        with LabProcess(partitions=4, test_mode=True) as lab:
            runs["ingest"].append(measure_ingest(lab, spec, parts4))
        with LabProcess(partitions=4, test_mode=True) as lab:
            rate, done = measure_worker(lab, spec, workdir, "one-%d" % attempt)
            runs["worker"].append(rate)
        with LabProcess(partitions=4, test_mode=True) as lab:
            rate, copies_done = measure_worker(lab, copies_spec, workdir, "copies-%d" % attempt, "worker copies")
            runs["copies"].append(rate)
            assert applied_total(lab) == done, "the run with copies applied another number of events"
        # CPU per event: the lowest of the attempts for each (noise only ever adds CPU time)
        for name in ("worker", "ingest client", "worker copies"):
            cpu[name] = min(cpu.get(name, float("inf")), CPU[name])
        print("  run %d: source %.0f, ingest %.0f, worker %.0f, worker with copies %.0f events/s; CPU/event reader %.2f, "
              "ingest client %.2f, worker %.2f us (load %.1f)"
              % (attempt + 1, runs["source"][-1], runs["ingest"][-1], runs["worker"][-1], runs["copies"][-1],
                 stats["cpu_us_per_event"], CPU["ingest client"], CPU["worker"], os.getloadavg()[0]))
    CPU.update(cpu)
    instructions = {}
    counter = perf_instructions()
    if counter is not None:
        for name, measure in (("reader", lambda: measure_source_read_detailed(spec, parts4, BATCH_EVENTS)),
                              ("worker", None)):
            box = []
            if measure is not None:
                with counter(box):
                    measure()
            else:
                with LabProcess(partitions=4, test_mode=True) as lab:
                    with counter(box):
                        measure_worker(lab, spec, workdir, "perf")
            if box:
                instructions[name] = box[0] / float(events)
    source_rate, ingest_rate, worker_rate = max(runs["source"]), max(runs["ingest"]), max(runs["worker"])
    with LabProcess(partitions=4, test_mode=True) as lab:
        stock_rate = measure_ingest(lab, spec, parts4, stock=True)
    print("  source read alone : %9.0f events/s (read_wire pages of %d inside bulk_gc, as the worker reads)"
          % (source_rate, BATCH_EVENTS))
    print("  lab ingest alone  : %9.0f events/s (stock post_ndjson client: %.0f events/s)" % (ingest_rate, stock_rate))
    print("  replay worker     : %9.0f events/s (%d events)" % (worker_rate, done))
    copies_rate = max(runs["copies"])
    print("  worker, 2%% copies : %9.0f rows/s (%d rows, %d of them copies; %.0f events sent/s)"
          % (copies_rate, copies_done, copies, copies_rate * (copies_done - copies) / copies_done))
    with LabProcess(partitions=4, test_mode=True) as lab:
        naive_rate = measure_naive(lab, spec, 5000, 10.0)
    print("  naive 1 req/event : %9.0f events/s" % naive_rate)
    slower = min(source_rate, ingest_rate)
    print("ratio worker / slower of (source read, lab ingest) = %.2f   (target >= %.2f; per attempt %s)"
          % (worker_rate / slower, CEILING_TARGET,
             ", ".join("%.2f" % (w / min(r, i)) for w, r, i in zip(runs["worker"], runs["source"], runs["ingest"]))))
    print("ratio worker / source read alone                   = %.2f" % (worker_rate / source_rate))
    print("ratio worker with 2 %% copies / copy-free worker     = %.2f   (target >= %.2f; per attempt %s)"
          % (copies_rate / worker_rate, COPIES_TARGET,
             ", ".join("%.2f" % (c / w) for c, w in zip(runs["copies"], runs["worker"]))))
    print("client-side CPU per row: copy-free worker %.2f us, with 2 %% copies %.2f us (ratio %.2f)"
          % (CPU["worker"], CPU["worker copies"], CPU["worker copies"] / CPU["worker"]))
    print("ratio worker / lab ingest alone                    = %.2f" % (worker_rate / ingest_rate))
    print("ratio worker / naive one-request-per-event client  = %.1f" % (worker_rate / naive_rate))
    print("ratio worker / lab ingest alone with the stock client = %.2f" % (worker_rate / stock_rate))
    print("per attempt, worker / ingest of the same attempt      = %s"
          % ", ".join("%.2f" % (w / i) for w, i in zip(runs["worker"], runs["ingest"])))
    budget = CPU["reader"] + CPU["ingest client"] + CPU_MARGIN_US
    print("CPU per event (process time, lowest of %d): reader %.2f us, ingest-only client %.2f us (stock client "
          "%.2f us), worker %.2f us; the lab uses the other core"
          % (args.repeat, CPU["reader"], CPU["ingest client"], CPU["ingest client (stock)"], CPU["worker"]))
    print("worker CPU per event %.2f us vs reader + ingest client + %.1f us = %.2f us: worker's own cost %.2f us "
          "(target: worker <= budget, %s)" % (CPU["worker"], CPU_MARGIN_US, budget,
                                              CPU["worker"] - CPU["reader"] - CPU["ingest client"],
                                              "met" if CPU["worker"] <= budget else "NOT met"))
    if instructions:
        print("instructions per event (perf stat, user space): %s"
              % ", ".join("%s %.0f" % item for item in sorted(instructions.items())))
    else:
        print("instructions per event: not counted (perf stat cannot count instructions:u on this host)")

    with LabProcess(partitions=8, test_mode=True) as lab:
        one = measure_cli_workers(lab, db8, workdir, ["w1"], "single")
    with LabProcess(partitions=8, test_mode=True) as lab:
        two = measure_cli_workers(lab, db8, workdir, ["w1", "w2"], "pair")
    print("8 partitions: 1 worker %.0f events/s, 2 workers %.0f events/s, ratio 2/1 = %.2f (load %.1f)"
          % (one, two, two / one, os.getloadavg()[0]))
    print("(2 cores shared by the lab, the workers and SQLite: a second worker cannot add much CPU here)")

    print("sources, the same %d events over 4 partitions, pages of %d, best of %d:" % (events, BATCH_EVENTS, args.repeat))
    results = measure_sources(parts4, BATCH_EVENTS, args.repeat, sqlite_path=db4)
    if not args.no_postgresql:
        with postgresql_tables(args.dsn, events, 4) as tables:
            results.update(measure_sources(parts4, BATCH_EVENTS, args.repeat, pg_tables=tables, dsn=args.dsn))
    print_source_ratios(results)
    print("load average %.1f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
