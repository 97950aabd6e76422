# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the full-recovery plan (guide scenario 1; not a public API).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): what a full recovery of wiped partitions does.

A partition whose WAL was lost restarts from its baseline checkpoint (``/v1/state``
``checkpoint: {full_index, event_ts_high_ns}``, ``applied_index == full_index``) in warmup.
This file decides, without sending anything:

- which partitions are affected (``affected_partitions``: warmup with nothing applied past
  the baseline, or the operator's list);
- where each one's replay starts (``start_of``): after the baseline's index when the history
  carries the Raft index surrogate, else from the baseline's event-time high-water mark minus
  an overlap, the events of the overlap being dropped by the cluster's ``event_id`` dedup
  (the baseline keeps its dedup entries); from the start of history without a baseline;
- how big the dedup table must be (``dedup_need``) and how wide L and C (``knob_needs``),
  refusing when a knob would break its bounds (``_config_bounds``, checked by ``_config_rules``),
  before any PATCH;
- the plan as a whole (``build_plan``), which ``full_recovery_plan`` returns and the
  ``full_recovery`` role publishes, records and follows.

Everything here is pure: the module reads the cluster and the source and hands the documents in.
"""

from __future__ import annotations

import math
import time

from ansible_collections.ceptra.backfill.plugins.module_utils import _config_bounds, _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._audit import find_record
from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import read_config
from ansible_collections.ceptra.backfill.plugins.module_utils._config_rules import validate_leaves
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import engine

PLAN_RECORD_KIND = "full_recovery_plan"
DEFAULT_DEDUP_HEADROOM = 1.25
DEDUP_ROUND_TO = 1000
_MS = 1000000
# Knob defaults of the contract, for a config that leaves a knob out.
KNOB_DEFAULTS = {"lateness_allowance_ms": 2000, "correction_horizon_ms": 3600000,
                 "dedup_capacity_per_partition": 1000000, "client_retry_window_s": 1800}
WIDENED_KNOBS = ("lateness_allowance_ms", "correction_horizon_ms")


class FullRecoveryError(CeptraError):
    """A full recovery that cannot be planned (the message says what to fix)."""


def plan_record_id(run_id):
    """``details.record_id`` of the run's plan record in the CP audit log (one per run)."""
    return "%s/%s" % (run_id, PLAN_RECORD_KIND)


# --------------------------------------------------------------------------- partitions
def manifests(state):
    """``{part_id: manifest}`` of a ``/v1/state`` document, in partition order."""
    return dict(_partitions.sorted_items((state or {}).get("partitions")))


def _checkpoint(manifest):
    checkpoint = manifest.get("checkpoint") if isinstance(manifest.get("checkpoint"), dict) else {}
    return int(checkpoint.get("full_index") or 0), int(checkpoint.get("event_ts_high_ns") or 0)


def is_wiped(manifest):
    """True for a partition in warmup that applied nothing past its baseline checkpoint."""
    gate = manifest.get("ingress_gate") or ("warmup" if manifest.get("warmup") else "open")
    full_index, _ts = _checkpoint(manifest)
    return gate == "warmup" and int(manifest.get("applied_index") or 0) == full_index \
        and int(manifest.get("commit_index") or full_index) == full_index


def affected_partitions(state, part_ids=None):
    """The partitions to recover: ``part_ids`` (checked against the cluster), else the wiped ones."""
    known = manifests(state)
    if part_ids:
        unknown = [p for p in part_ids if str(p) not in known]
        if unknown:
            raise FullRecoveryError("full recovery: unknown partition(s) %s; this cluster has %s"
                                    % (", ".join(map(str, unknown)), ", ".join(known)))
        return _partitions.sort_ids(str(p) for p in part_ids)
    return [part_id for part_id, manifest in known.items() if is_wiped(manifest)]


def start_of(manifest, order_by, overlap_ms):
    """Where a partition's replay starts, from its baseline checkpoint.

    ``order_by`` is the history's order (``raft_index`` when it carries the surrogate).
    Returns ``{mode, baseline_index, event_ts_high_ns, source_bound}``; ``source_bound`` is the
    ``partition_start`` entry of the source (None: from the start of history)."""
    full_index, ts_high = _checkpoint(manifest)
    start = {"baseline_index": full_index, "event_ts_high_ns": ts_high}
    if full_index == 0:
        start.update(mode="start_of_history", source_bound=None)
    elif order_by == "raft_index":
        start.update(mode="raft_index", source_bound={"after_raft_index": full_index})
    else:
        # Events at or just below the high-water mark may or may not be in the baseline (ties,
        # small disorder): send them again; the baseline's dedup entries drop those it holds.
        begin = max(0, ts_high - int(overlap_ms) * _MS)
        start.update(mode="event_time", overlap_ms=int(overlap_ms), boundary_dedup="event_id",
                     source_bound={"from_event_time_ns": begin})
    return start


# --------------------------------------------------------------------------- knobs
def effective_knob(config, key, part_id=None, metric=None):
    """``key`` as the cluster resolves it: metrics.<m> > partitions.<p> > top level > default."""
    for scope, name in (("metrics", metric), ("partitions", part_id)):
        if name is None:
            continue
        entry = (config.get(scope) or {}).get(str(name))
        if isinstance(entry, dict) and entry.get(key) is not None:
            return entry[key]
    value = config.get(key)
    return KNOB_DEFAULTS.get(key) if value is None else value


def dedup_need(occupancy, replay_events, live_rate_eps, duration_s, retry_window_s,
               headroom=DEFAULT_DEDUP_HEADROOM):
    """Dedup entries a partition must hold during its recovery.

    Nothing leaves the table before it is older than the retry window and finalized, and the
    widened C keeps the replayed range from finalizing: the table holds what it holds now,
    every replayed event, and the live events of at least a retry window (or the run)."""
    live = float(live_rate_eps) * max(float(duration_s), float(retry_window_s))
    return int(math.ceil((int(occupancy) + int(replay_events) + live) * float(headroom)))


def knob_needs(config, part_ids, metrics, oldest_ts_ns, now_ns, window_s):
    """L and C settings that keep every replayed event mutable until the overrides expire.

    Per affected partition (``partitions.<p>``) for every metric there, plus per metric
    (``metrics.<m>``, ``metrics`` = the config's per-metric entries) where a per-metric knob
    exists and would shadow the partition's (metric > partition > top level).
    Only raises; returns ``(settings, needed_ms)``."""
    if oldest_ts_ns is None:
        return {}, 0
    needed = int(math.ceil(max(0, now_ns - oldest_ts_ns) / float(_MS))) + int(window_s) * 1000
    settings = {}
    for key in WIDENED_KNOBS:
        for part_id in part_ids:
            if int(effective_knob(config, key, part_id=part_id)) < needed:
                settings.setdefault("partitions", {}).setdefault(part_id, {})[key] = needed
        for metric in metrics:
            entry = (config.get("metrics") or {}).get(metric)
            if isinstance(entry, dict) and entry.get(key) is not None and int(entry[key]) < needed:
                settings.setdefault("metrics", {}).setdefault(metric, {})[key] = needed
    return settings, needed


def _leaves(settings, prefix=""):
    out = {}
    for key, value in settings.items():
        path = prefix + key
        if isinstance(value, dict):
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def bound_violations(settings, part_ids_known):
    """Violations of the planned overrides (the config manager's rules), with what to do."""
    violations = validate_leaves(_leaves(settings), partition_ids=part_ids_known)
    for item in violations:
        if _config_bounds.int_bounds(item["path"]) is not None:
            item["message"] += (" (the recovery needs more than the knob allows: recover fewer partitions at a "
                                "time, lower live_rate_eps, or set a later horizon start)")
    return violations


# --------------------------------------------------------------------------- the plan
def build_plan(inputs):
    """The full-recovery plan from what the module read (a dict):

    ``run_id``, ``state`` (/v1/state), ``config`` (/v1/config ``config``), ``part_ids`` (affected), ``starts`` ({part_id: start_of}),
    ``replay`` (the replay engine's plan with those starts), ``horizon_ns``, ``now_ns``,
    ``window_s`` (validity of the overrides), ``live_rate_eps``, ``estimated_rate``,
    ``dedup_headroom``, ``order_by``, ``resumed``.
    Raises FullRecoveryError naming every knob that would break its bounds."""
    config, known = inputs["config"], manifests(inputs["state"])
    replay_parts = inputs["replay"]["partitions"]
    retry_window_s = int(effective_knob(config, "client_retry_window_s"))
    capacity = int(effective_knob(config, "dedup_capacity_per_partition"))
    rate = max(1.0, float(inputs["estimated_rate"]))
    partitions, oldest = {}, None
    for part_id in inputs["part_ids"]:
        replay = replay_parts.get(part_id, {})
        remaining = int(replay.get("events_remaining") or 0)
        dedup = known.get(part_id, {}).get("dedup") or {}
        need = dedup_need(dedup.get("occupancy") or 0, remaining, inputs["live_rate_eps"], remaining / rate,
                          retry_window_s, inputs["dedup_headroom"])
        if remaining and replay.get("min_ts_ns") is not None:
            oldest = replay["min_ts_ns"] if oldest is None else min(oldest, replay["min_ts_ns"])
        partitions[part_id] = {
            "start": inputs["starts"][part_id], "events": remaining,
            "events_done": int(replay.get("events_done") or 0), "status": replay.get("status"),
            "first_position": replay.get("first_position"), "last_position": replay.get("last_position"),
            "min_ts_ns": replay.get("min_ts_ns"), "max_ts_ns": replay.get("max_ts_ns"),
            "dedup": {"occupancy": int(dedup.get("occupancy") or 0), "capacity": capacity, "needed": need},
        }
    settings, lc_needed = knob_needs(config, inputs["part_ids"], sorted(config.get("metrics") or {}), oldest,
                                     inputs["now_ns"], inputs["window_s"])
    dedup_needed = max([p["dedup"]["needed"] for p in partitions.values()] or [0])
    if dedup_needed > capacity:
        settings["dedup_capacity_per_partition"] = int(math.ceil(dedup_needed / float(DEDUP_ROUND_TO))) * DEDUP_ROUND_TO
    violations = bound_violations(settings, list(known))
    if violations:
        raise FullRecoveryError(
            "full recovery %s refused before any config change: %s" % (
                inputs["run_id"], "; ".join("%s: %s" % (v["path"], v["message"]) for v in violations)),
            violations=violations)
    return {
        "run_id": inputs["run_id"], "resumed": bool(inputs["resumed"]), "order_by": inputs["order_by"],
        "part_ids": list(inputs["part_ids"]), "horizon_ns": inputs["horizon_ns"], "partitions": partitions,
        # event-time span of what is left to replay (the horizon when nothing is)
        "window_start_ns": oldest if oldest is not None else inputs["horizon_ns"],
        "events": sum(p["events"] for p in partitions.values()),
        "dedup_capacity": {"current": capacity, "needed": dedup_needed,
                           "raise_to": settings.get("dedup_capacity_per_partition")},
        "lateness_correction_needed_ms": lc_needed,
        "overrides": settings,
        # what the config holds after the recovery besides the baseline: the gates opened
        "expected_config_changes": {"partitions": {p: {"ingress_gate": "open"} for p in inputs["part_ids"]}},
        "source_partition_start": {p: s["source_bound"] for p, s in inputs["starts"].items() if s["source_bound"]},
    }


def plan_lines(plan):
    """The plan as lines a person reads (check mode, AWX job output)."""
    lines = ["full recovery %s: %d partition(s), %d event(s) to replay up to horizon %s (order %s)%s" % (
        plan["run_id"], len(plan["part_ids"]), plan["events"], plan["horizon_ns"], plan["order_by"],
        ", resumed from the recorded plan" if plan["resumed"] else "")]
    for part_id, part in plan["partitions"].items():
        start = part["start"]
        where = {"start_of_history": "from the start of history",
                 "raft_index": "after raft index %s" % start["baseline_index"],
                 "event_time": "from event time %s (high-water mark %s - %s ms, event_id dedup at the boundary)" % (
                     (start.get("source_bound") or {}).get("from_event_time_ns"), start["event_ts_high_ns"],
                     start.get("overlap_ms"))}[start["mode"]]
        lines.append("partition %s: %s; %d event(s) left (%d done); dedup needed %d of capacity %d" % (
            part_id, where, part["events"], part["events_done"], part["dedup"]["needed"], part["dedup"]["capacity"]))
    if plan["overrides"]:
        lines.append("overrides: %s" % plan["overrides"])
    return lines


# --------------------------------------------------------------------------- reading it all
def replay_source(source, order_by, part_ids, starts, horizon_ns):
    """The source spec the replay runs with: the history's order, the affected partitions,
    each partition's start and the horizon as the window's (exclusive) end."""
    spec = dict(source, order_by=order_by, part_ids=list(part_ids),
                partition_start={p: s["source_bound"] for p, s in starts.items() if s["source_bound"]})
    window = dict(spec.get("window") or {})
    window["end_ns"] = int(horizon_ns)
    spec["window"] = window
    return spec


def _replay_plan(options, spec):
    config = {"run_id": options["run_id"], "part_ids": spec["part_ids"], "estimated_rate": options["estimated_rate"]}
    run = engine.open_run(config, options["client"], spec, options["cursor_store"], register_workers=False)
    try:
        return run.plan()
    finally:
        engine.close_run(run)


def _order_and_plan(options, starts_for, part_ids, horizon_ns, order_by):
    """``(order_by, starts, replay plan)``; ``auto`` takes raft_index when every row to replay
    has the surrogate (the source refuses NULLs in raft order), else event_time."""
    orders = [order_by] if order_by != "auto" else ["raft_index", "event_time"]
    if order_by == "auto" and (options["source"].get("columns") or {}).get("raft_index", "raft_index") is None:
        orders = ["event_time"]
    for attempt, order in enumerate(orders):
        starts = starts_for(order)
        spec = replay_source(options["source"], order, part_ids, starts, horizon_ns)
        last = attempt == len(orders) - 1
        try:
            replay = _replay_plan(options, spec)
        except engine.ReplayError:
            if last:
                raise
            continue
        # the source refuses (per partition) raft order over rows without the surrogate
        if last or not any(p.get("status") == "refused" for p in replay["partitions"].values()):
            return order, starts, spec, replay
    raise FullRecoveryError("full recovery: no order to read the history in")  # not reached


def plan_recovery(options, clock=time.time):
    """Read the cluster, the run's recorded plan (a rerun resumes it) and the source; return
    ``{plan, replay_source, record, lines}``. ``options``: ``client``, ``run_id``, ``source``,
    ``cursor_store``, ``partitions``, ``order_by`` (auto|raft_index|event_time), ``horizon_ns``,
    ``boundary_overlap_ms``, ``live_rate_eps``, ``estimated_rate``, ``override_window_s``,
    ``dedup_headroom``."""
    client = options["client"]
    state = client.get_json("state") or {}
    config, _version = read_config(client)
    known = manifests(state)
    recorded = find_record(client, PLAN_RECORD_KIND, plan_record_id(options["run_id"]))
    now_ns = int(clock() * 1e9)
    if recorded:
        details = recorded["details"]
        part_ids, horizon_ns = details["part_ids"], int(details["horizon_ns"])
        order, starts = details["order_by"], details["starts"]
        spec = replay_source(options["source"], order, part_ids, starts, horizon_ns)
        replay = _replay_plan(options, spec)
    else:
        part_ids = affected_partitions(state, options.get("partitions"))
        if not part_ids:
            raise FullRecoveryError(
                "full recovery %s: no partition is in warmup at its baseline checkpoint (ingress_gate warmup and "
                "applied_index == checkpoint.full_index); name the partitions to recover with partitions"
                % options["run_id"])
        horizon_ns = int(options.get("horizon_ns") or now_ns)
        overlap = options.get("boundary_overlap_ms")
        overlap = int(effective_knob(config, "lateness_allowance_ms")) if overlap is None else int(overlap)
        order, starts, spec, replay = _order_and_plan(
            options, lambda order: {p: start_of(known[p], order, overlap) for p in part_ids}, part_ids,
            horizon_ns, options.get("order_by") or "auto")
    plan = build_plan({
        "run_id": options["run_id"], "state": state, "config": config, "part_ids": part_ids, "starts": starts,
        "replay": replay, "horizon_ns": horizon_ns, "now_ns": now_ns, "window_s": options["override_window_s"],
        "live_rate_eps": options["live_rate_eps"], "estimated_rate": options["estimated_rate"],
        "dedup_headroom": options["dedup_headroom"], "order_by": order, "resumed": bool(recorded)})
    record = {"record_id": plan_record_id(options["run_id"]), "run_id": options["run_id"], "part_ids": part_ids,
              "starts": starts, "horizon_ns": horizon_ns, "order_by": order}
    return {"plan": plan, "replay_source": spec, "record": record, "lines": plan_lines(plan)}
