# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay command line, for long runs outside Ansible.

From a checkout, after ``scripts/bootstrap`` (or the README's first commands)::

    scripts/ceptra-replay run|plan|status|pause|resume --run-id ID --source history.db --cursor-store cursors.db ...

Wherever the collection is installed (its collections path on ``PYTHONPATH``, e.g.
``~/.ansible/collections``)::

    python -m ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli run ...

``run`` prints one progress line per second (events done/total, rate, ETA, lag per
partition). SIGINT/SIGTERM finish the in-flight batch, commit the cursor and exit with a
resume hint (exit code 3). Connection options come from ``--url``/``--token`` or the
``CEPTRA_*`` environment variables (as for the modules). Exit codes: 0 done, 1 failed,
2 bad input (also: finished, but a partition was refused because rows of it have NULL in
an ordering column; the others were replayed), 3 not finished (resume), 4 finished with
stopped partitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_record import MASK, Redactor, credentials_in
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import engine
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import progress as progress_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_STOPPED = 0, 1, 2, 3, 4
# How this command was started, for the usage text and resume hints (scripts/ceptra-replay sets it).
COMMAND = os.environ.get("CEPTRA_REPLAY_COMMAND") or \
    "python -m ansible_collections.ceptra.backfill.plugins.module_utils._replay.cli"


class UsageError(engine.ReplayError):
    """Bad command-line input; the message says what to fix."""


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _store_options(p):
    p.add_argument("--run-id", required=True, help="name of the replay run (cursor key)")
    p.add_argument("--cursor-store", help="SQLite cursor file (default when no --cursor-dsn)")
    p.add_argument("--cursor-dsn", help="PostgreSQL DSN of a shared cursor store")
    p.add_argument("--cursor-table", default=None, help="cursor table in PostgreSQL")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _source_options(p):
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


# Options of ``run`` that take a value: flag, type, help (None: the run's default applies).
RUN_VALUE_OPTIONS = (
    ("--url", str, "cluster URL (else $CEPTRA_URL)"),
    ("--token", str, "bearer token (else $CEPTRA_TOKEN)"),
    ("--ca-path", str, None), ("--client-cert", str, None), ("--client-key", str, None),
    ("--time-budget", float, "seconds, then stop cleanly"),
    ("--apply-lag-threshold-ms", float, None), ("--replication-lag-threshold-ms", float, None),
    ("--critical-factor", float, None), ("--initial-rate", float, None), ("--max-rate", float, None),
    ("--max-parallel-partitions", int, None), ("--batch-events", int, None), ("--max-window", int, None),
    ("--pause-file", str, None),
    ("--dead-letter", str, "JSONL file for bad rows"),
    ("--max-event-bytes", int, "events larger than this (serialised) are bad rows (default %d)"
     % engine.DEFAULTS.max_event_bytes),
    ("--metrics-textfile", str, None), ("--pushgateway-url", str, None), ("--audit-file", str, None),
    ("--operator", str, None),
)
# Switches of ``run``: flag, help.
RUN_SWITCHES = (
    ("--no-throttle", "send as fast as the cluster acks"),
    ("--no-replay-sessions", "event_id dedup only"),
    ("--no-find-copies", "do not look for later copies of an event in the history: they are sent, and the "
                         "cluster's event_id dedup applies each once if it arrives within client_retry_window_s "
                         "of its original (always in event_time order; a later one is refused "
                         "PERMANENT_RETRY_EXPIRED and stops its partition)"),
    ("--retry-stopped", None),
    ("--reassign-workers", "record --worker-hosts as the run's worker group, replacing the one it started with "
                           "(stop every worker of the run first)"),
    ("--no-cp-audit", "skip summary records in the CP audit log"),
    ("--quiet", "no progress lines"),
)


def _run_options(p):
    for flag, kind, text in RUN_VALUE_OPTIONS:
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--on-bad-row", choices=engine.BAD_ROW_POLICIES, default=None)
    for flag, text in RUN_SWITCHES:
        p.add_argument(flag, action="store_true", help=text)


def build_parser():
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Replay historic events into a CEPtra cluster (resumable, lag-aware).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="replay (to completion, or for --time-budget seconds)")
    for name, text in (("run", None), ("plan", "what a run would do (nothing is sent)"),
                       ("status", "progress from the cursor store and the source")):
        p = run if name == "run" else sub.add_parser(name, help=text)
        _store_options(p)
        _source_options(p)
    _run_options(run)
    for name in ("pause", "resume"):
        p = sub.add_parser(name, help="%s every worker of the run (cursor-store flag)" % name)
        _store_options(p)
        p.add_argument("--reason", default="")
    return parser


def source_spec(args):
    """The source spec of the command line's options."""
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
    """The cursor store spec of the command line's options."""
    if args.cursor_dsn:
        spec = {"type": "postgresql", "dsn": args.cursor_dsn}
        if args.cursor_table:
            spec["table"] = args.cursor_table
        return spec
    if not args.cursor_store:
        raise UsageError("give --cursor-store (SQLite file) or --cursor-dsn (PostgreSQL)")
    return {"type": "sqlite", "path": args.cursor_store}


def run_config(args):
    """The run options of the command line's options (None: the default)."""
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
    return COMMAND + " " + " ".join(shlex.quote(a) for a in args)


def _client(args):
    return CeptraClient.from_env(url=args.url, token=args.token, ca_path=args.ca_path,
                                 client_cert=args.client_cert, client_key=args.client_key)


class MaskedStream(object):
    """A text stream that masks the run's credentials in everything written to it (a progress
    line, an error a library raised with a DSN in it, the resume hint built from argv)."""

    def __init__(self, stream, redactor):
        self.stream, self.redactor = stream, redactor

    def write(self, text):
        return self.stream.write(self.redactor.text(text))

    def flush(self):
        self.stream.flush()


def credentials_of(args, environ=None):
    """The redactor for one command line: the bearer token, the DSNs' and the URL's credentials,
    and the secret environment variables (CEPTRA_TOKEN, PGPASSWORD, ...)."""
    found = [getattr(args, "token", None)]
    for name in ("source_dsn", "cursor_dsn", "url"):
        found.extend(credentials_in(getattr(args, name, None)))
    context = Redactor.from_context(environ=os.environ if environ is None else environ)
    return Redactor([value for value in found if value] + context.secrets)


def main(argv=None, out=sys.stdout, err=sys.stderr):
    """Entry point; returns the process exit code. Nothing it prints shows a credential."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    redactor = credentials_of(args)
    out, err = MaskedStream(out, redactor), MaskedStream(err, redactor)
    try:
        if args.command in ("pause", "resume"):
            return _pause_or_resume(args, out)
        run = _open(args, err)
    except CeptraError as exc:  # bad options, an unreadable source or store, a bad --url
        err.write("error: %s\n" % exc.message)
        return EXIT_USAGE
    except Exception as exc:  # pylint: disable=broad-except  # anything else: a message, not a traceback
        err.write("error: %s: %s\n" % (type(exc).__name__, exc))
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
    except CeptraError as exc:   # the source or the cursor store failed while planning: a message, not a traceback
        err.write("error: %s\n" % exc.message)
        return EXIT_USAGE
    finally:
        engine.close_run(run)


def _write_resume_hint(argv, err):
    hint = resume_hint(argv)
    err.write("resume with: %s\n" % hint)
    if MASK in err.redactor.text(hint):
        err.write("  (credentials are shown as %s: pass them again, or set CEPTRA_TOKEN and PGPASSWORD instead)\n"
                  % MASK)


def _pause_or_resume(args, out):
    store = open_cursor_store(cursor_spec(args))
    try:
        store.set_paused(args.run_id, args.command == "pause", args.reason)
    finally:
        store.close()
    out.write("run %s %s\n" % (args.run_id, "paused" if args.command == "pause" else "resumed"))
    return EXIT_DONE


def _open(args, err):
    """The run for ``run``, ``plan`` or ``status`` (only ``run`` builds a client: the others never call the cluster)."""
    def show(snap):
        if not args.quiet:
            err.write(progress_mod.format_progress_line(snap) + "\n")
            err.flush()
    running = args.command == "run"
    return engine.open_run(run_config(args), _client(args) if running else None, source_spec(args), cursor_spec(args),
                           args.worker_hosts, args.this_host, progress_callback=show if running else None,
                           register_workers=running, reassign_workers=getattr(args, "reassign_workers", False))


def _print_plan(plan, out):
    out.write("run %s: %d event(s) to replay, estimated %ss\n"
              % (plan["run_id"], plan["events_remaining"], plan["estimated_duration_s"]))
    for pid, p in plan["partitions"].items():
        out.write("  partition %s: %s, %d done, %d remaining, positions %s..%s, ~%ss%s\n" % (
            pid, p["status"], p["events_done"], p["events_remaining"], p["first_position"],
            p["last_position"], p["estimated_duration_s"],
            (" (%s: %s)" % (p["status"], p["report"].get("message"))) if p.get("report") else ""))


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
        _write_resume_hint(argv, err)
        return EXIT_FAILED
    if not result["done"]:
        err.write("replay not finished (%s); " % ("interrupted" if result["interrupted"] else "time budget used"))
        _write_resume_hint(argv, err)
        return EXIT_INCOMPLETE
    for report in result["refused"]:
        err.write("partition %s REFUSED (column(s) %s): %s\n" % (
            report.get("part_id"), ", ".join(report.get("columns") or []), report.get("message")))
    if result["refused"]:
        return EXIT_USAGE      # bad input: the other partitions were replayed
    return EXIT_STOPPED if result["stopped"] else EXIT_DONE


if __name__ == "__main__":
    raise SystemExit(main())
