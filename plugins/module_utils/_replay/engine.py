# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay engine as its callers see it.

The ``historic_replay`` / ``historic_replay_info`` modules and the command line (``cli``)
use only this file:

- ``open_run(config, client, source_spec, cursor_store_spec, ...)`` opens the source and
  the cursor store, deals this worker's partitions and returns a ``run.ReplayRun``
  (``run.plan()``, ``run.run(time_budget_s)``); ``close_run(run)`` closes what it opened;
- ``module_argument_spec(run=...)`` and ``config_from_params`` / ``source_spec_from_params``
  turn module options into a run (defaults from ``config.DEFAULTS``);
- ``check_mode_result(run)`` is the plan in the shape of a run's result, ``run_failure``
  says why a finished slice fails its task;
- ``ReplayError`` is the base of every error the engine raises.
"""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import config as config_mod
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import (
    BAD_ROW_POLICIES, DEFAULTS, OPTION_NAMES, ReplayConfigError)
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.cursor import open_cursor_store
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.fanout import assign_partitions, check_worker_group
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.run import ReplayRun
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.source import FIND_COPIES, ORDERINGS, open_source

# The base of every error the engine raises (callers catch this one).
ReplayError = config_mod.ReplayError
# Seconds a module call replays before it returns progress (0 = to completion).
TIME_BUDGET_S = 60
# Run options a module exposes, with their argument-spec type (defaults: config.DEFAULTS).
RUN_OPTION_TYPES = {
    "apply_lag_threshold_ms": "float", "replication_lag_threshold_ms": "float", "critical_factor": "float",
    "throttle": "bool", "initial_rate": "float", "max_rate": "float", "max_window": "int", "batch_events": "int",
    "max_parallel_partitions": "int", "use_replay_sessions": "bool", "pause_file": "path", "on_bad_row": "str",
    "dead_letter_path": "path", "max_event_bytes": "int", "metrics_textfile": "path", "pushgateway_url": "str",
    "audit_file": "path", "operator": "str", "cp_audit": "bool", "retry_stopped": "bool", "durability_wait_s": "float",
}


def open_run(config, client, source_spec, cursor_store_spec, worker_hosts=None, this_host=None,
             progress_callback=None, register_workers=True, reassign_workers=False):
    """Open the source and cursor store from their specs, apply the fan-out assignment and
    return a ready ``ReplayRun`` (call ``close_run`` afterwards).

    With ``worker_hosts`` the list is checked against (and, with ``register_workers``,
    recorded as) the run's worker group in the cursor store: ``fanout.check_worker_group``.
    Raises ReplayError (the message says what to fix).
    """
    cfg = config_mod.build_config(config)
    source = open_source(source_spec)
    try:
        store = open_cursor_store(cursor_store_spec)
    except Exception:
        source.close()
        raise
    try:
        part_ids = cfg.part_ids if cfg.part_ids is not None else source.partitions()
        if worker_hosts:
            if not this_host:
                raise ReplayConfigError("worker_hosts needs this_host (this worker's name from that list)")
            part_ids = assign_partitions(part_ids, worker_hosts, this_host)
            check_worker_group(store, cfg.run_id, worker_hosts, register=register_workers, replace=reassign_workers)
        cfg.part_ids = [str(p) for p in part_ids]
        return ReplayRun(cfg, client, source, store, source_factory=lambda: open_source(source_spec),
                         progress_callback=progress_callback)
    except Exception:
        source.close()
        store.close()
        raise


def close_run(run):
    """Close the run's shared source and cursor store (a failure to close is not reported: the run's own result counts)."""
    for obj in (run.source, run.store):
        try:
            obj.close()
        except Exception:  # pylint: disable=broad-except
            pass


def module_argument_spec(run=False):
    """Options of ``historic_replay_info``, or with ``run`` of ``historic_replay`` (without connection options)."""
    spec = {
        "source": {"type": "dict", "required": True, "no_log": False},
        "cursor_store": {"type": "dict", "required": True, "no_log": False},
        "run_id": {"type": "str", "required": True},
        "partitions": {"type": "list", "elements": "str"},
        "window_start_ns": {"type": "int"},
        "window_end_ns": {"type": "int"},
        "order_by": {"type": "str", "choices": list(ORDERINGS)},
        "worker_hosts": {"type": "list", "elements": "str"},
        "this_host": {"type": "str"},
        "estimated_rate": {"type": "float", "default": DEFAULTS.estimated_rate},
    }
    if run:
        for name, kind in RUN_OPTION_TYPES.items():
            spec[name] = {"type": kind}
            if getattr(DEFAULTS, name) is not None:
                spec[name]["default"] = getattr(DEFAULTS, name)
        spec["on_bad_row"]["choices"] = list(BAD_ROW_POLICIES)
        spec.update(
            time_budget={"type": "float", "default": TIME_BUDGET_S},
            find_copies={"type": "bool", "default": FIND_COPIES},
            reassign_workers={"type": "bool", "default": False},
            fail_on_stopped={"type": "bool", "default": True},
        )
    return spec


def credential_values(params):
    """The option values that may carry credentials (DSNs, the Pushgateway URL): a module
    registers the secrets inside them as no-log values (``CeptraModule.no_log_credentials``)."""
    return [(params.get(option) or {}).get("dsn") for option in ("source", "cursor_store")] + \
        [params.get("pushgateway_url")]


def config_from_params(params):
    """The run options of a module's params (``partitions`` -> ``part_ids``)."""
    config = {name: params[name] for name in OPTION_NAMES if name in params}
    config["part_ids"] = params.get("partitions")
    return config


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


def check_mode_result(run):
    """The plan, shaped like a run's result: what a real run would do; nothing is sent."""
    plan = run.plan()
    parts = plan["partitions"].values()
    return dict(changed=plan["events_remaining"] > 0, done=plan["done"], plan=plan, partitions=plan["partitions"],
                events_done=sum(p["events_done"] for p in parts), events_total=sum(p["events_total"] for p in parts),
                events_sent=0, duplicates_skipped=sum(p["duplicates_skipped"] for p in parts), rate_eps=None,
                eta_s=plan["estimated_duration_s"],
                stopped=[p["report"] for p in parts if p["report"] and p["status"] == "stopped"],
                refused=plan["refused"],
                dedup="replay_session" if run.cfg.use_replay_sessions else "event_id", aborted=None)


def run_failure(result, run_id, fail_on_stopped=True):
    """Why a finished slice fails its task (None when it does not): an error that ended the
    run, failed partitions, an abort on critical lag, partitions refused as unorderable (NULL
    in an ordering column), or (``fail_on_stopped``) stopped partitions."""
    if result.get("error"):
        return "historic_replay run %s failed: %s" % (run_id, result["error"])
    failed = [p for p in result["partitions"].values() if p["status"] == "failed"]
    if failed:
        reasons = "; ".join("%s: %s" % (p["part_id"], (p.get("report") or {}).get("message")) for p in failed)
        return ("historic_replay run %s: partition(s) failed: %s. Fix the cause and rerun the task to resume from the "
                "cursors" % (run_id, reasons))
    if result.get("aborted"):
        return ("historic_replay run %s aborted: %s. Check the cluster's apply and replication lag, then rerun the "
                "task to resume from the cursors" % (run_id, result["aborted"]))
    if result["done"] and result.get("refused"):
        names = "; ".join("partition %s: column(s) %s: %s" % (
            r.get("part_id"), ", ".join(r.get("columns") or []), r.get("message")) for r in result["refused"])
        return ("historic_replay run %s: partition(s) refused, their rows cannot be ordered (the other partitions "
                "were replayed): %s" % (run_id, names))
    if result["done"] and result["stopped"] and fail_on_stopped:
        names = "; ".join("partition %s at event %s (position %s): %s %s" % (
            r.get("part_id"), r.get("event_id"), r.get("position"), r.get("reason"), r.get("message"))
            for r in result["stopped"])
        return ("historic_replay run %s finished, but partition(s) stopped: %s. Fix the cause and rerun with "
                "retry_stopped=true" % (run_id, names))
    return None
