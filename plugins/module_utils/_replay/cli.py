# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay entry points.

Helpers shared by the modules and the command line (``open_run``, ``close_run``,
``module_argument_spec``...), and the command line itself:

    python -m ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli \\
        run|plan|status|pause|resume --run-id ID --source history.db --cursor-store cursors.db ...

``run`` prints one progress line per second (events done/total, rate, ETA, lag per
partition). SIGINT/SIGTERM finish the in-flight batch, commit the cursor and exit with a
resume hint (exit code 3). Connection options come from ``--url``/``--token`` or the
``CEPTRA_*`` environment variables (as for the modules).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import progress as progress_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import run as runner_mod

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_STOPPED = 0, 1, 2, 3, 4


# ---------------------------------------------------------------- shared by the CLI and the modules
def open_run(config, client, source_spec, cursor_store_spec, worker_hosts=None, this_host=None,
             progress_callback=None, register_workers=True, reassign_workers=False):
    """Open the source and cursor store from their specs, apply the fan-out assignment and
    return a ready ``ReplayRun`` (call ``close_run`` afterwards).

    With ``worker_hosts`` the list is checked against (and, with ``register_workers``,
    recorded as) the run's worker group in the cursor store: ``fanout.check_worker_group``.

    Raises ReplayConfigError / SourceError / CursorStoreError / FanoutError with readable
    messages; callers turn them into ``fail_json`` or a CLI error.
    """
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.fanout import (
        assign_partitions, check_worker_group)
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import open_source

    cfg = runner_mod.build_config(config)
    source = open_source(source_spec)
    try:
        store = open_cursor_store(cursor_store_spec)
    except Exception:
        source.close()
        raise
    try:
        part_ids = cfg["part_ids"] if cfg["part_ids"] is not None else source.partitions()
        if worker_hosts:
            if not this_host:
                raise runner_mod.ReplayConfigError("worker_hosts needs this_host (this worker's name from that list)")
            part_ids = assign_partitions(part_ids, worker_hosts, this_host)
            check_worker_group(store, cfg["run_id"], worker_hosts, register=register_workers,
                               replace=reassign_workers)
        cfg["part_ids"] = [str(p) for p in part_ids]
        return runner_mod.ReplayRun(cfg, client, source, store, source_factory=lambda: open_source(source_spec),
                                    progress_callback=progress_callback)
    except Exception:
        source.close()
        store.close()
        raise


def close_run(run):
    """Close the run's shared source and cursor store."""
    for obj in (run.source, run.store):
        try:
            obj.close()
        except Exception:  # closing must not hide the run's own result
            pass


def module_argument_spec():
    """Options shared by the historic_replay and historic_replay_info modules (without connection options)."""
    return {
        "source": {"type": "dict", "required": True, "no_log": False},
        "cursor_store": {"type": "dict", "required": True, "no_log": False},
        "run_id": {"type": "str", "required": True},
        "partitions": {"type": "list", "elements": "str"},
        "window_start_ns": {"type": "int"},
        "window_end_ns": {"type": "int"},
        "order_by": {"type": "str", "choices": ["raft_index", "event_time"]},
        "worker_hosts": {"type": "list", "elements": "str"},
        "this_host": {"type": "str"},
        "estimated_rate": {"type": "float", "default": 2000},
    }


def source_spec_from_params(params):
    """The source spec with the module's window/order/partition options applied."""
    spec = dict(params["source"])
    if params.get("order_by"):
        spec["order_by"] = params["order_by"]
    if params.get("window_start_ns") is not None or params.get("window_end_ns") is not None:
        spec["window"] = {"start_ns": params.get("window_start_ns"), "end_ns": params.get("window_end_ns")}
    if params.get("partitions"):
        spec["part_ids"] = list(params["partitions"])
    # the operator's size limit and copy detection reach the source's own checks
    # (a key given inside O(source) wins)
    if params.get("max_event_bytes") is not None:
        spec.setdefault("max_event_bytes", params["max_event_bytes"])
    if params.get("find_copies") is not None:
        spec.setdefault("find_copies", params["find_copies"])
    return spec


# ---------------------------------------------------------------- command line


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ceptra-replay", description="Replay historic events into a CEPtra cluster (resumable, lag-aware).")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, needs_source=True):
        p.add_argument("--run-id", required=True, help="name of the replay run (cursor key)")
        p.add_argument("--cursor-store", help="SQLite cursor file (default when no --cursor-dsn)")
        p.add_argument("--cursor-dsn", help="PostgreSQL DSN of a shared cursor store")
        p.add_argument("--cursor-table", default=None, help="cursor table in PostgreSQL")
        if needs_source:
            p.add_argument("--source", help="SQLite file with the historic events")
            p.add_argument("--source-dsn", help="PostgreSQL DSN of the historic events")
            p.add_argument("--table", default=None, help="historic table (default ceptra_history)")
            p.add_argument("--columns", default=None, help="JSON column mapping {logical: physical}")
            p.add_argument("--order-by", choices=("raft_index", "event_time"), default=None)
            p.add_argument("--window-start-ns", type=int, default=None)
            p.add_argument("--window-end-ns", type=int, default=None)
            p.add_argument("--partitions", type=_csv, default=None, help="comma-separated part ids")
            p.add_argument("--worker-hosts", type=_csv, default=None, help="comma-separated worker group")
            p.add_argument("--this-host", default=None, help="this worker's name in --worker-hosts")
            p.add_argument("--estimated-rate", type=float, default=None, help="events/s per partition for plans")
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    run = sub.add_parser("run", help="replay (to completion, or for --time-budget seconds)")
    common(run)
    run.add_argument("--url", default=None, help="cluster URL (else $CEPTRA_URL)")
    run.add_argument("--token", default=None, help="bearer token (else $CEPTRA_TOKEN)")
    run.add_argument("--ca-path", default=None)
    run.add_argument("--client-cert", default=None)
    run.add_argument("--client-key", default=None)
    run.add_argument("--time-budget", type=float, default=None, help="seconds, then stop cleanly")
    run.add_argument("--apply-lag-threshold-ms", type=float, default=None)
    run.add_argument("--replication-lag-threshold-ms", type=float, default=None)
    run.add_argument("--critical-factor", type=float, default=None)
    run.add_argument("--initial-rate", type=float, default=None)
    run.add_argument("--max-rate", type=float, default=None)
    run.add_argument("--no-throttle", action="store_true", help="send as fast as the cluster acks")
    run.add_argument("--no-replay-sessions", action="store_true", help="event_id dedup only")
    run.add_argument("--max-parallel-partitions", type=int, default=None)
    run.add_argument("--batch-events", type=int, default=None)
    run.add_argument("--max-window", type=int, default=None)
    run.add_argument("--pause-file", default=None)
    run.add_argument("--on-bad-row", choices=("stop", "dead_letter"), default=None)
    run.add_argument("--dead-letter", default=None, help="JSONL file for bad rows")
    run.add_argument("--max-event-bytes", type=int, default=None,
                     help="events larger than this (serialised) are bad rows (default 1048576)")
    run.add_argument("--no-find-copies", action="store_true",
                     help="do not look for later copies of an event in the history (they are sent, "
                          "and deduplicated by the cluster only within its retry window)")
    run.add_argument("--metrics-textfile", default=None)
    run.add_argument("--pushgateway-url", default=None)
    run.add_argument("--audit-file", default=None)
    run.add_argument("--operator", default=None)
    run.add_argument("--retry-stopped", action="store_true")
    run.add_argument("--reassign-workers", action="store_true",
                     help="record --worker-hosts as the run's worker group, replacing the one it started with "
                          "(stop every worker of the run first)")
    run.add_argument("--no-cp-audit", action="store_true", help="skip summary records in the CP audit log")
    run.add_argument("--quiet", action="store_true", help="no progress lines")

    plan = sub.add_parser("plan", help="what a run would do (nothing is sent)")
    common(plan)
    status = sub.add_parser("status", help="progress from the cursor store and the source")
    common(status)
    for name in ("pause", "resume"):
        p = sub.add_parser(name, help="%s every worker of the run (cursor-store flag)" % name)
        common(p, needs_source=False)
        p.add_argument("--reason", default="")
    return parser


def source_spec(args):
    if bool(args.source) == bool(args.source_dsn):
        raise UsageError("give exactly one of --source (SQLite file) or --source-dsn (PostgreSQL)")
    spec = {"type": "sqlite", "path": args.source} if args.source else {"type": "postgresql", "dsn": args.source_dsn}
    if args.table:
        spec["table"] = args.table
    if args.columns:
        try:
            spec["columns"] = json.loads(args.columns)
        except ValueError as exc:
            raise UsageError("--columns must be a JSON object {logical: physical}: %s" % exc) from None
    if args.order_by:
        spec["order_by"] = args.order_by
    if args.window_start_ns is not None or args.window_end_ns is not None:
        spec["window"] = {"start_ns": args.window_start_ns, "end_ns": args.window_end_ns}
    if args.partitions:
        spec["part_ids"] = args.partitions
    if getattr(args, "max_event_bytes", None) is not None:
        spec["max_event_bytes"] = args.max_event_bytes
    if getattr(args, "no_find_copies", False):
        spec["find_copies"] = False
    return spec


def cursor_spec(args):
    if args.cursor_dsn:
        spec = {"type": "postgresql", "dsn": args.cursor_dsn}
        if args.cursor_table:
            spec["table"] = args.cursor_table
        return spec
    if not args.cursor_store:
        raise UsageError("give --cursor-store (SQLite file) or --cursor-dsn (PostgreSQL)")
    return {"type": "sqlite", "path": args.cursor_store}


def run_config(args):
    cfg = {"run_id": args.run_id, "part_ids": args.partitions, "estimated_rate": args.estimated_rate}
    if args.command != "run":
        return cfg
    cfg.update({
        "apply_lag_threshold_ms": args.apply_lag_threshold_ms,
        "replication_lag_threshold_ms": args.replication_lag_threshold_ms,
        "critical_factor": args.critical_factor, "initial_rate": args.initial_rate, "max_rate": args.max_rate,
        "throttle": not args.no_throttle, "use_replay_sessions": not args.no_replay_sessions,
        "max_parallel_partitions": args.max_parallel_partitions, "batch_events": args.batch_events,
        "max_window": args.max_window, "pause_file": args.pause_file, "on_bad_row": args.on_bad_row,
        "dead_letter_path": args.dead_letter, "metrics_textfile": args.metrics_textfile,
        "pushgateway_url": args.pushgateway_url, "audit_file": args.audit_file, "operator": args.operator,
        "retry_stopped": args.retry_stopped or None, "cp_audit": not args.no_cp_audit,
        "max_event_bytes": args.max_event_bytes,
    })
    return cfg


class UsageError(ReplayError):
    """Bad command-line input; the message says what to fix."""


def resume_hint(argv):
    """The command that continues this run (same arguments, without --time-budget)."""
    args, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--time-budget":
            skip = True
            continue
        if item.startswith("--time-budget="):
            continue
        args.append(item)
    return "python -m ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli " + " ".join(
        shlex.quote(a) for a in args)


def _client(args):
    from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
    return CeptraClient.from_env(url=args.url, token=args.token, ca_path=args.ca_path,
                                 client_cert=args.client_cert, client_key=args.client_key)


class _NoClient(object):
    """Stands in for the client in plan/status: they never talk to the cluster."""

    def __getattr__(self, name):
        raise RuntimeError("plan/status do not contact the cluster")


def main(argv=None, out=sys.stdout, err=sys.stderr):
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("pause", "resume"):
            from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store
            store = open_cursor_store(cursor_spec(args))
            try:
                store.set_paused(args.run_id, args.command == "pause", args.reason)
            finally:
                store.close()
            out.write("run %s %s\n" % (args.run_id, "paused" if args.command == "pause" else "resumed"))
            return EXIT_DONE
        client = _client(args) if args.command == "run" else _NoClient()

        def show(snap):
            if not args.quiet:
                err.write(progress_mod.format_progress_line(snap) + "\n")
                err.flush()
        run = open_run(run_config(args), client, source_spec(args), cursor_spec(args),
                       args.worker_hosts, args.this_host,
                       progress_callback=show if args.command == "run" else None,
                       register_workers=args.command == "run",
                       reassign_workers=getattr(args, "reassign_workers", False))
    except CeptraError as exc:  # bad options, an unreadable source or store, a bad --url
        err.write("error: %s\n" % exc.message)
        return EXIT_USAGE
    try:
        if args.command in ("plan", "status"):
            plan = run.plan()
            if args.json:
                out.write(json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n")
            else:
                _print_plan(plan, out)
            return EXIT_DONE
        return _run(run, args, argv, out, err)
    finally:
        close_run(run)


def _print_plan(plan, out):
    out.write("run %s: %d event(s) to replay, estimated %ss\n"
              % (plan["run_id"], plan["events_remaining"], plan["estimated_duration_s"]))
    for pid, p in plan["partitions"].items():
        out.write("  partition %s: %s, %d done, %d remaining, positions %s..%s, ~%ss%s\n" % (
            pid, p["status"], p["events_done"], p["events_remaining"], p["first_position"],
            p["last_position"], p["estimated_duration_s"],
            (" (stopped: %s)" % p["report"].get("message")) if p.get("report") else ""))


def _run(run, args, argv, out, err):
    def on_signal(signum, frame):
        err.write("\nsignal %d: finishing the in-flight batch and committing the cursor...\n" % signum)
        run.request_stop()
        # a second signal uses the default action (exit at once; the cursor stays consistent)
        signal.signal(signum, signal.SIG_DFL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = run.run(time_budget_s=args.time_budget)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if args.json:
        out.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    else:
        out.write(progress_mod.format_progress_line(result) + "\n")
    for warning in result["warnings"]:
        err.write("warning: %s\n" % warning)
    for report in result["stopped"]:
        err.write("partition %s STOPPED at event %s (position %s): %s %s\n" % (
            report.get("part_id"), report.get("event_id"), report.get("position"),
            report.get("reason"), report.get("message")))
    if result["error"] or result["aborted"]:
        err.write("replay failed: %s\n" % (result["error"] or result["aborted"]))
        err.write("resume with: %s\n" % resume_hint(argv))
        return EXIT_FAILED
    if not result["done"]:
        err.write("replay not finished (%s); resume with:\n  %s\n"
                  % ("interrupted" if result["interrupted"] else "time budget used", resume_hint(argv)))
        return EXIT_INCOMPLETE
    return EXIT_STOPPED if result["stopped"] else EXIT_DONE


if __name__ == "__main__":
    raise SystemExit(main())
