"""Micro-benchmark of the lab partition engine: append + apply throughput (events/s).

Feeds N events (default 200k) through Partition.append in batches and applies each batch
with apply_pending, the way the server's append stream does with apply capacity unlimited.
Routing uses fake compiled queries shaped like the gaming_cheat_detection bundle (7 queries
over 4 source metrics, lanes by player_id, one quantile_over_time), so the measured path
includes matching, lane projection, watermarks and exact monoid updates.

Run: .venv/bin/python benchmarks/bench_lab_engine.py [--events N] [--batch B]
"""
from __future__ import annotations

import argparse
import os
import re
import time


from ceptra_lab.config_knobs import KnobView  # noqa: E402
from ceptra_lab.partition import Partition  # noqa: E402


class FakeQuery:
    """Just the CompiledQuery surface the engine uses."""

    def __init__(self, metric, function, source_metric, matchers, by_labels):
        self.metric, self.function, self.source_metric = metric, function, source_metric
        self.matchers, self.by_labels = matchers, tuple(by_labels)

    def matches(self, name, labels):
        if name != self.source_metric:
            return False
        for label, op, value in self.matchers:
            got = labels.get(label, "")
            if op == "=" and got != value or op == "!=" and got == value:
                return False
            if op == "=~" and not re.fullmatch(value, got) or op == "!~" and re.fullmatch(value, got):
                return False
        return True

    def lane_of(self, labels):
        return ",".join("%s=%s" % (label, labels.get(label, "")) for label in self.by_labels)


class FakeBundle:
    def __init__(self, queries):
        self.queries, self.def_version, self.policy_version = queries, 1, 1
        self.bundle_id, self.needs_replay = "gaming@fake", False


def gaming_bundle() -> FakeBundle:
    ranked = [("queue", "=", "ranked")]
    live = [("mode", "=", "live")]
    player = ("player_id",)
    return FakeBundle([
        FakeQuery("anti_cheat_flags", "increase", "anti_cheat_flags_total", ranked, player),
        FakeQuery("headshot_ratio_short", "avg_over_time", "player_headshot_ratio", ranked, player),
        FakeQuery("movement_anomaly_score", "avg_over_time", "player_movement_deviation_score", live, player),
        FakeQuery("matchmaking_latency_p95", "quantile_over_time", "matchmaking_latency_seconds", ranked, ()),
        FakeQuery("anti_cheat_flag_baseline", "avg_over_time", "anti_cheat_flags_total", ranked, player),
        FakeQuery("headshot_ratio_baseline", "avg_over_time", "player_headshot_ratio", ranked, player),
        FakeQuery("movement_anomaly_baseline", "avg_over_time", "player_movement_deviation_score", live, player),
    ])


def make_events(count: int, start_ns: int) -> list[dict]:
    metrics = ["anti_cheat_flags_total", "player_headshot_ratio", "player_movement_deviation_score",
               "matchmaking_latency_seconds"]
    events = []
    for i in range(count):
        player = "player-%d" % (i % 32)
        metric = metrics[i % 4]
        labels = {"queue": "ranked", "mode": "live", "player_id": player}
        events.append({"event_id": "b-%d" % i, "partition_key": player, "ts_ns": start_ns + i * 50_000,
                       "schema_key": "metric_sample_v1",
                       "payload": {"metric": metric, "labels": labels, "value": (i % 97) / 7.0}})
    return events


def real_gaming_bundle():
    """The reference gaming bundle compiled by ceptra_lab.definitions (--real-bundle)."""
    from ceptra_lab.definitions import compile_bundle, parse_bundle
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference",
                        "bundles", "gaming_cheat_detection.yaml")
    with open(path, encoding="utf-8") as handle:
        return compile_bundle(parse_bundle(handle.read()))


def run_once(count: int, batch: int, bundle) -> tuple[float, float, Partition]:
    """Append+apply ``count`` events; returns (wall seconds, CPU seconds, partition)."""
    clock = [1_700_000_000_000_000_000]
    part = Partition("0", KnobView(), lambda: clock[0])
    part.set_bundles(bundle, None)
    events = make_events(count, clock[0] - 60_000_000_000)
    clock[0] = events[-1]["ts_ns"]
    append, apply_pending = part.append, part.apply_pending
    wall, cpu = time.perf_counter(), time.process_time()
    for offset in range(0, len(events), batch):
        for event in events[offset:offset + batch]:
            response = append(event, 300)
            if response["status"] != "Healthy":
                raise SystemExit("unexpected refusal: %s" % response)
        apply_pending()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if part.applied_total != count:
        raise SystemExit("applied %d of %d events" % (part.applied_total, count))
    return wall, cpu, part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=256, help="events per apply_pending call")
    parser.add_argument("--rounds", type=int, default=3, help="best of N runs (the machine is shared)")
    parser.add_argument("--real-bundle", action="store_true",
                        help="compile ../shared/reference/bundles/gaming_cheat_detection.yaml instead of faking it")
    args = parser.parse_args()
    bundle = real_gaming_bundle() if args.real_bundle else gaming_bundle()
    runs = [run_once(args.events, args.batch, bundle) for _ in range(args.rounds)]
    wall, cpu, part = min(runs, key=lambda run: run[0])
    snapshot = part.metrics_snapshot()
    print("events: %d  batch: %d  best of %d rounds  bundle: %s"
          % (args.events, args.batch, args.rounds, "real" if args.real_bundle else "fake"))
    print("append+apply wall: %.3f s -> %.0f events/s (%.2f us/event)"
          % (wall, args.events / wall, wall / args.events * 1e6))
    print("append+apply cpu:  %.3f s -> %.0f events/s (%.2f us/event)"
          % (cpu, args.events / cpu, cpu / args.events * 1e6))
    print("ratio to the 30000 events/s target (wall): %.2f" % (args.events / wall / 30000))
    print("metrics: %d, digest %s..." % (len(snapshot["metrics"]), snapshot["digest"][:23]))


if __name__ == "__main__":
    main()
