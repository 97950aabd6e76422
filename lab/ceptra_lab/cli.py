"""The `ceptra-lab` command: serve, certs, seed-history, live."""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from ceptra_lab.auth import TRUST_DOMAIN


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (one subcommand per tool)."""
    parser = argparse.ArgumentParser(prog="ceptra-lab", description="CEPtra lab: a local emulator of a CEPtra cluster")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the emulated cluster's HTTP(S) server")
    serve.add_argument("--partitions", type=int, required=True, help="number of partitions (>= 1)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--test-mode", action="store_true", help="enable the test RPCs and fault hooks")
    serve.add_argument("--apply-capacity", type=float, default=None, metavar="EPS_PER_PARTITION",
                       help="apply at most this many events/s per partition (default: unlimited)")
    serve.add_argument("--replication-capacity", type=float, default=None, metavar="EPS_PER_PARTITION",
                       help="the lagging follower takes at most this many events/s per partition (default: keeps up)")
    serve.add_argument("--tls-dir", help="serve HTTPS with mutual TLS using the files of `ceptra-lab certs DIR`")
    serve.add_argument("--tokens", help="JSON tokens file (default: the demo tokens lab-<role>)")
    serve.add_argument("--trust-domain", default=TRUST_DOMAIN, metavar="DOMAIN",
                       help=f"SPIFFE trust domain of client identities (default: {TRUST_DOMAIN}, the one "
                            "`ceptra-lab certs` uses); a certificate from another domain is refused with 401")
    serve.add_argument("--state-dir", help="keep WAL, config versions and audit log here across restarts")
    serve.add_argument("--dialect", choices=("spec", "reference"), default="spec",
                       help="serve /readyz and /metrics in the spec shape or the reference implementation's variant")
    serve.add_argument("--shadow-warmup-ms", type=int, default=300, help="time a bundle's shadow takes to become Ready")
    serve.add_argument("--log-level", default="WARNING")

    certs = sub.add_parser("certs", help="write a test CA, a server certificate and one client certificate per role")
    certs.add_argument("directory")
    certs.add_argument("--trust-domain", default=TRUST_DOMAIN, metavar="DOMAIN",
                       help=f"SPIFFE trust domain of the client certificates (default: {TRUST_DOMAIN})")

    seed = sub.add_parser("seed-history", help="write a synthetic historic event set into SQLite or PostgreSQL")
    seed.add_argument("--db", required=True, help="sqlite:PATH or postgresql://... (or a libpq DSN 'host=... dbname=...')")
    seed.add_argument("--partitions", type=int, required=True)
    seed.add_argument("--events-per-partition", type=int, required=True)
    seed.add_argument("--bundle", required=True, help="bundle file whose source metrics and labels the samples use")
    seed.add_argument("--start-ns", type=int, default=None, help="event time of the first event (default: now - 1 h)")
    seed.add_argument("--step-ms", type=int, default=10, help="event-time step between a partition's events")
    seed.add_argument("--keys", type=int, default=16, help="distinct partition keys (players, devices...)")
    seed.add_argument("--secondary-classification-ratio", type=float, default=0.0)
    seed.add_argument("--duplicate-ratio", type=float, default=0.0, help="share of rows repeating an earlier event_id")
    seed.add_argument("--table", default="ceptra_history")
    seed.add_argument("--seed", type=int, default=7, help="random seed (the data set is deterministic)")

    live = sub.add_parser("live", help="append live events at a steady rate (optionally skipping a window)")
    live.add_argument("--url", required=True)
    live.add_argument("--token", default="lab-ingest")
    live.add_argument("--rate", type=float, required=True, help="events per second (all partitions)")
    live.add_argument("--duration", type=float, required=True, help="seconds")
    live.add_argument("--skip-from-ms", type=int, default=None, help="start of the skipped window, ms after start")
    live.add_argument("--skip-to-ms", type=int, default=None, help="end of the skipped window, ms after start")
    live.add_argument("--bundle", help="bundle whose metrics the events carry (default: plain events)")
    live.add_argument("--partitions", type=int, default=None, help="partitions to feed (default: read /v1/state)")
    live.add_argument("--cacert", help="CA file for https URLs")
    live.add_argument("--cert", help="client certificate for https URLs")
    live.add_argument("--key", help="client key for https URLs")
    live.add_argument("--prefix", default="live", help="event_id prefix")
    live.add_argument("--archive", help="keep every generated event in a history table: sqlite:PATH or a PostgreSQL DSN")
    live.add_argument("--archive-table", default="ceptra_history", help="table of --archive")
    live.add_argument("--mirror-url", help="send every event (skipped ones too) to this second cluster as well")
    live.add_argument("--mirror-token", help="token for --mirror-url (default: --token)")
    live.add_argument("--secondary-classification-ratio", type=float, default=0.0,
                      help="share of events the secondary system annotates (payload secondary_classification)")
    live.add_argument("--allow-refused", action="store_true",
                      help="exit 0 even when the cluster refused events (an outage on purpose)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "certs":
            from ceptra_lab.auth import check_trust_domain
            from ceptra_lab.certs import write_certs
            paths = write_certs(args.directory, trust_domain=check_trust_domain(args.trust_domain))
            for name, path in sorted(paths.items()):
                print(f"{name}: {path}")
            return 0
        from ceptra_lab import traffic
        if args.command == "seed-history":
            return traffic.seed_history_command(args)
        return traffic.live_command(args)
    except ValueError as exc:
        print(f"ceptra-lab {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # e.g. the port is taken, the state dir is not writable
        print(f"ceptra-lab {args.command}: {exc.strerror or exc}"
              f"{' (' + str(exc.filename) + ')' if getattr(exc, 'filename', None) else ''}", file=sys.stderr)
        return 2


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; persist state before exiting."""
    from ceptra_lab.auth import Authenticator, check_trust_domain, demo_tokens, load_tokens
    from ceptra_lab.certs import server_ssl_context
    from ceptra_lab.cluster import Cluster
    from ceptra_lab.server import make_app

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.partitions < 1:
        raise ValueError("--partitions must be at least 1")
    if args.apply_capacity is not None and args.apply_capacity <= 0:
        raise ValueError("--apply-capacity must be a positive number of events per second")
    if args.replication_capacity is not None and args.replication_capacity <= 0:
        raise ValueError("--replication-capacity must be a positive number of events per second")
    trust_domain = check_trust_domain(args.trust_domain)
    # With mutual TLS the certificate is the identity; demo tokens are only for plain-HTTP demos.
    if args.tokens:
        tokens = load_tokens(args.tokens, trust_domain)
    else:
        tokens = {} if args.tls_dir else demo_tokens(trust_domain)
    ssl_context = server_ssl_context(args.tls_dir) if args.tls_dir else None
    cluster = Cluster(args.partitions, test_mode=args.test_mode, apply_capacity=args.apply_capacity,
                      state_dir=args.state_dir, shadow_warmup_ms=args.shadow_warmup_ms,
                      replication_capacity=args.replication_capacity)
    app = make_app(cluster, Authenticator(tokens, trust_domain), dialect=args.dialect)
    bound_gc_pauses()
    asyncio.run(_run(app, args.host, args.port, ssl_context, None if args.tokens else tokens))
    return 0


def bound_gc_pauses() -> None:
    """Keep the interpreter's full collections short while the WAL grows.

    The lab holds every WAL entry (tuples with the message dicts) until a checkpoint lets
    it go, and CPython's full collection scans all of them: measured 60 -> 325 ms pauses,
    every few seconds, during a 180k-event replay (the whole server stands still, so apply
    lag jumps by the pause whatever the client does). After each full collection the
    survivors are frozen (``gc.freeze``), so the next one scans only what is newer.
    Frozen objects are still freed by reference counting; only a cycle among them would
    be kept, and the lab's long-lived state (WAL, aggregates) builds none.
    """
    if _freeze_after_full not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full)


def _freeze_after_full(phase: str, info: dict) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


async def _run(app, host: str, port: int, ssl_context, demo) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=512)
    await site.start()
    bound_port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    shown_host = f"[{host}]" if ":" in host else host
    print(f"ceptra-lab listening on {scheme}://{shown_host}:{bound_port}", flush=True)
    if demo:
        for token, identity in demo.items():
            print(f"demo token ({identity.role}): {token}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()   # runs on_shutdown: cancels workers and persists the state dir
    print("ceptra-lab stopped", flush=True)
