"""Benchmark: the lab's NDJSON append-stream throughput (events/s, unthrottled, aggregates and rules applied).

Starts a lab (LabProcess) with no bundle-free shortcuts: the gaming reference bundle is
uploaded and activated so every event feeds real aggregates and runs its two CEL rules. Then a separate client process
pushes N events over P partitions with S concurrent streams (one connection per stream,
batches of B lines per request) and prints events/s as measured by the client, plus the
lab's applied count as a check.

    .venv/bin/python benchmarks/bench_lab_stream.py [--events 300000] [--partitions 4] [--streams 4] [--batch 5000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import time
import urllib.parse


from ceptra_lab.testing import LabProcess  # noqa: E402

BUNDLE = os.path.join(os.environ.get("CEPTRA_SHARED") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"),
                      "reference", "bundles", "gaming_cheat_detection.yaml")


def make_lines(stream: int, part_id: str, count: int, start_ns: int, step_ns: int = 100_000,
               firing: bool = False) -> list[bytes]:
    """Pre-encoded append messages (the client's cost is kept out of the measurement).

    ``firing``: players 0-3 have a headshot ratio that climbs over the run, so the short
    window runs ahead of the 30-minute baseline and potential_aimbot_user fires for them."""
    metrics = [("anti_cheat_flags_total", "queue", "ranked"), ("player_headshot_ratio", "queue", "ranked"),
               ("player_movement_deviation_score", "mode", "live")]
    lines = []
    for i in range(count):
        metric, label, value = metrics[i % len(metrics)]
        player = f"player-{i % 32}"
        sample = float(i % 7)
        if firing and metric == "player_headshot_ratio" and i % 32 < 4:
            sample = 12.0 * i / count
        lines.append(json.dumps({"event_id": f"b{stream}-{i}", "part_id": part_id, "partition_key": player,
                                 "ts_ns": start_ns + i * step_ns, "schema_key": "metric_sample_v1",
                                 "payload": {"metric": metric, "labels": {label: value, "player_id": player},
                                             "value": sample, "session_id": f"s-{i % 32}"}},
                                separators=(",", ":")).encode() + b"\n")
    return lines


def push(args: tuple) -> tuple[int, int, float]:
    """One stream: send the lines in batches over one keep-alive connection; returns (sent, healthy, end time)."""
    url, token, stream, part_id, count, batch, start_ns, go_at, step_ns, firing = args
    lines = make_lines(stream, part_id, count, start_ns, step_ns, firing)
    time.sleep(max(0.0, go_at - time.time()))   # every stream starts together, after building its lines
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    healthy = 0
    started = time.perf_counter()
    for offset in range(0, count, batch):
        body = b"".join(lines[offset:offset + batch])
        connection.request("POST", f"/v1/partitions/{part_id}/append-stream", body=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        data = response.read()
        healthy += data.count(b'"status":"Healthy"')
    del started
    connection.close()
    return count, healthy, time.time()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report load-independent throughput."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--state-dir", default=None, help="run the lab with --state-dir (WAL persisted)")
    parser.add_argument("--firing", action="store_true",
                        help="spread event time over 1 ms steps and make 4 players' headshot ratio climb, so a "
                             "rule fires and derived events are emitted (the default data never fires)")
    args = parser.parse_args()
    with LabProcess(partitions=args.partitions, test_mode=True, state_dir=args.state_dir,
                    extra_args=["--shadow-warmup-ms", "50"]) as lab:
        with open(BUNDLE, "rb") as handle:
            status, _, body = lab.request("POST", "/v1/definitions", data=handle.read(), role="operator",
                                          headers={"Content-Type": "application/yaml"})
        assert status == 200, body
        bundle_id = body["bundle_id"]
        deadline = time.time() + 30
        while True:
            status, _, barrier = lab.request("POST", "/v1/activate", {"bundle_id": bundle_id}, role="operator")
            if barrier["state"] == "committed" or time.time() > deadline:
                break
            time.sleep(0.1)
        per_stream = args.events // args.streams
        step_ns = 1_000_000 if args.firing else 100_000
        start_ns = time.time_ns() - 60 * 1_000_000_000 - per_stream * step_ns
        go_at = time.time() + 3.0 + per_stream / 100000
        jobs = [(lab.url, lab.tokens["ingest"], s, str(s % args.partitions), per_stream, args.batch, start_ns, go_at,
                 step_ns, args.firing) for s in range(args.streams)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.streams) as pool:
            pending = pool.map_async(push, jobs)
            time.sleep(max(0.0, go_at - time.time()))
            cpu_start = cpu_seconds(lab.pid)
            results = pending.get()
            cpu_used = cpu_seconds(lab.pid) - cpu_start
        wall = max(r[2] for r in results) - go_at
        sent = sum(r[0] for r in results)
        healthy = sum(r[1] for r in results)
        _, _, state = lab.request("GET", "/v1/state", role="observer")
        applied = sum(p["applied_index"] for p in state["partitions"])
        _, _, rules = lab.request("GET", "/v1/test/derived-events?part_id=0", role="observer")
        print(f"events sent: {sent}, healthy: {healthy}, applied (lab): {applied}")
        print(f"rules: {rules['rule_evaluations']} CEL evaluations (one per rule, lane inputs and pane), "
              f"errors {rules['rule_errors']}, derived events on partition 0: {rules['count']}")
        print(f"streams: {args.streams}, partitions: {args.partitions}, batch: {args.batch} lines/request")
        print(f"append-stream throughput: {sent / wall:,.0f} events/s (wall {wall:.2f} s; target >= 30,000)")
        print(f"lab process CPU: {cpu_used:.2f} s -> {sent / cpu_used:,.0f} events per lab CPU-second "
              f"(the ceiling on an idle core; load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
