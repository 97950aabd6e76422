# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: activation barriers and partition WAL replay jobs.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal helpers of ceptra.backfill for activation barriers and WAL replay jobs (not a public API).

Functions take the shared client (``_client.CeptraClient``: ``request`` and ``get_json``);
the waits take ``sleep`` and ``clock`` (``_wait.poll_until``).
"""

from __future__ import annotations

import time

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import (
    FAILED,
    NEEDS_REPLAY,
    ControlPlaneError,
    active_bundle_id,
    describe_partitions,
    find_bundle,
    get_definitions,
    shadow_summary,
    sort_part_ids,
)
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import normalize_readiness
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until

BARRIER_OPEN_STATES = ("pending",)
BARRIER_END_STATES = ("committed", "aborted", "expired")
REPLAY_END_STATES = ("completed", "failed")


# --------------------------------------------------------------------------- activation


def plan_activation(definitions, bundle_id, exclude_partitions=None):
    """Which partitions an activation of ``bundle_id`` targets and which of them block it.

    Pure function over a normalised /v1/definitions document.
    """
    entry = find_bundle(definitions, bundle_id)
    if entry is None:
        known = ", ".join(e.get("bundle_id") or "?" for e in definitions["bundles"]) or "none"
        raise ControlPlaneError("bundle %s is not on the cluster (uploaded bundles: %s); upload it with "
                                "ceptra.backfill.bundle first" % (bundle_id, known))
    summary = shadow_summary(entry)
    excluded = sort_part_ids(exclude_partitions or [])
    unknown = [p for p in excluded if p not in summary["partitions"]]
    if unknown:
        raise ControlPlaneError("exclude_partitions names partition(s) %s that bundle %s does not have (it has %s)"
                                % (", ".join(unknown), bundle_id, ", ".join(sort_part_ids(summary["partitions"]))))
    targeted = [p for p in sort_part_ids(summary["partitions"]) if p not in excluded]
    return {
        "bundle_id": bundle_id,
        "entry": entry,
        "shadow": summary,
        "targeted_partitions": targeted,
        "excluded_partitions": excluded,
        "failed_partitions": [p for p in targeted if summary["partitions"][p]["status"] == FAILED],
        "needs_replay": [p for p in targeted if summary["partitions"][p]["status"] == NEEDS_REPLAY],
        "not_ready_partitions": [p for p in targeted if summary["partitions"][p]["status"] != "ready"],
    }


def failed_partitions_message(bundle_id, plan):
    """The refusal for partitions stuck in shadow failure: name them and the two ways out."""
    failed = plan["failed_partitions"]
    return ("activation of %s is blocked by partition(s) stuck in shadow failure: %s. Choose one: "
            "exclude them explicitly (exclude_partitions: [%s]) or abort the activation (abort: true); "
            "this module never activates past them on its own"
            % (bundle_id, describe_partitions(plan["shadow"], failed), ", ".join('"%s"' % p for p in failed)))


def get_barrier(client, barrier_id):
    """GET /v1/activate/<barrier_id>."""
    return client.get_json("activation", params={"barrier_id": barrier_id}) or {}


def find_open_barrier(client, definitions, bundle_id, include_committed=False):
    """The pending barrier document of ``bundle_id``, or None.

    The contract has no barrier list: the bundle entry may name its barrier
    (``activation_barrier_id``/``barrier_id``), else /readyz names the cluster's current one
    (read through the tolerant :func:`_readiness.normalize_readiness`, so every variant works).
    ``include_committed`` also returns a barrier of this bundle that committed since
    /v1/definitions was read (a race with the previous run's barrier).
    """
    entry = find_bundle(definitions, bundle_id) or {}
    candidates = [entry.get("activation_barrier_id"), entry.get("barrier_id")]
    if not any(candidates):
        # One read, no retries: a 503 that is not a readiness document just names no barrier.
        response = client.request("GET", "readyz", expected=(200, 503))
        candidates.append(normalize_readiness(response.json, response.status)["activation_barrier_id"])
    for barrier_id in candidates:
        if not barrier_id:
            continue
        response = client.request("GET", "activation", params={"barrier_id": barrier_id}, expected=(200, 404))
        barrier = response.json if response.status == 200 and isinstance(response.json, dict) else None
        if not barrier:
            continue
        raced = include_committed and barrier.get("state") == "committed" and barrier.get("bundle_id") == bundle_id
        if barrier.get("state") not in BARRIER_OPEN_STATES and not raced:
            continue
        # A barrier document that names another bundle is not ours.
        if barrier.get("bundle_id") not in (None, bundle_id):
            continue
        barrier.setdefault("barrier_id", barrier_id)
        return barrier
    return None


def wait_for_barrier(client, barrier, timeout, interval, sleep=time.sleep, clock=time.monotonic):
    """Poll the barrier until it leaves ``pending``; raise ControlPlaneError on abort/expiry/timeout."""
    barrier_id = barrier.get("barrier_id")

    def look():
        fresh = dict(get_barrier(client, barrier_id))
        fresh.setdefault("barrier_id", barrier_id)
        blocked = sort_part_ids(fresh.get("blocked_partitions") or [])
        if fresh.get("state") in BARRIER_OPEN_STATES and blocked:
            # A shadow failed while the barrier waited: it cannot commit on its own (§15).
            raise ControlPlaneError(
                "activation barrier %s is blocked by partition(s) in shadow failure: %s. Choose one: exclude them "
                "explicitly (exclude_partitions: [%s]) or abort the activation (abort: true)"
                % (barrier_id, ", ".join(blocked), ", ".join('"%s"' % p for p in blocked)),
                barrier=fresh, failed_partitions=blocked)
        return fresh.get("state") not in BARRIER_OPEN_STATES, fresh

    poll = poll_until(look, timeout, interval, first=(barrier.get("state") not in BARRIER_OPEN_STATES, barrier),
                      sleep=sleep, clock=clock)
    barrier = poll.value
    if not poll.done:
        raise ControlPlaneError(
            "timed out after %ss waiting for activation barrier %s to commit; partitions still missing: %s"
            % (timeout, barrier_id, ", ".join(sort_part_ids(barrier.get("missing_partitions") or [])) or "none named"),
            barrier=barrier)
    if barrier.get("state") != "committed":
        raise ControlPlaneError("activation barrier %s ended %s instead of committing (missing partitions: %s)"
                                % (barrier_id, barrier.get("state"),
                                   ", ".join(sort_part_ids(barrier.get("missing_partitions") or [])) or "none"),
                                barrier=barrier)
    return barrier


def activate(client, bundle_id, readiness_threshold=1.0, exclude_partitions=None, abort=False, wait=True,
             timeout=300, interval=2, check_mode=False, sleep=time.sleep, clock=time.monotonic):
    """Activate ``bundle_id`` (or abort its pending activation) idempotently; return the module result."""
    definitions = get_definitions(client)
    active_before = active_bundle_id(definitions)
    result = {"changed": False, "bundle_id": bundle_id, "active_bundle_id": active_before,
              "barrier": None, "excluded_partitions": sort_part_ids(exclude_partitions or [])}
    if abort:
        return _abort(client, definitions, bundle_id, result, check_mode)
    if active_before == bundle_id:
        result["msg"] = "bundle %s is already active" % bundle_id
        return result
    plan = plan_activation(definitions, bundle_id, exclude_partitions)
    result.update(targeted_partitions=plan["targeted_partitions"], shadow=plan["shadow"]["partitions"],
                  blocking_partitions=plan["not_ready_partitions"], failed_partitions=plan["failed_partitions"],
                  needs_replay=plan["needs_replay"])
    if not plan["targeted_partitions"]:
        raise ControlPlaneError("activation of %s would target no partition: every partition is excluded" % bundle_id)
    if plan["failed_partitions"]:
        raise ControlPlaneError(failed_partitions_message(bundle_id, plan), **result)
    barrier = find_open_barrier(client, definitions, bundle_id, include_committed=True)
    diff = {"before": {"active_bundle_id": active_before}, "after": {"active_bundle_id": bundle_id}}
    if barrier is not None and barrier.get("state") in BARRIER_OPEN_STATES and _barrier_outdated(
            barrier, plan["excluded_partitions"], readiness_threshold):
        # The pending barrier was asked for with other exclusions or threshold: update it (POST again).
        result["msg"] = "updating pending activation barrier %s of %s" % (barrier.get("barrier_id"), bundle_id)
        barrier = None
    if barrier is None:
        if wait and plan["needs_replay"] and not check_mode:
            raise ControlPlaneError(
                "activation of %s cannot commit: partition(s) %s need a WAL replay from the latest full checkpoint "
                "first (run ceptra.backfill.wal_replay with needs_replay_only: true), or exclude them"
                % (bundle_id, describe_partitions(plan["shadow"], plan["needs_replay"])), **result)
        if check_mode:
            result.update(changed=True, would_activate=True, diff=diff)
            return result
        body = {"bundle_id": bundle_id, "readiness_threshold": readiness_threshold,
                "exclude_partitions": plan["excluded_partitions"], "abort": False}
        response = client.request("POST", "activate", body=body, expected=(200, 201, 202))
        barrier = response.json if isinstance(response.json, dict) else {}
        result["changed"] = True
    else:
        result["msg"] = "activation barrier %s for %s was already %s" % (
            barrier.get("barrier_id"), bundle_id, barrier.get("state"))
        if check_mode:
            # A real run would only change something by waiting for the barrier to commit.
            result.update(changed=bool(wait), would_activate=True, barrier=barrier)
            if wait:
                result["diff"] = diff
            return result
    if wait and barrier.get("state") in BARRIER_OPEN_STATES:
        barrier = wait_for_barrier(client, barrier, timeout, interval, sleep=sleep, clock=clock)
    elif barrier.get("state") in ("aborted", "expired"):
        raise ControlPlaneError("activation barrier %s for %s ended %s" % (
            barrier.get("barrier_id"), bundle_id, barrier.get("state")), barrier=barrier)
    committed = barrier.get("state") == "committed"
    # Waiting on a barrier a previous run created also counts as a change once it commits.
    result.update(barrier=barrier, changed=result["changed"] or committed,
                  active_bundle_id=bundle_id if committed else active_before)
    if result["changed"]:
        result["diff"] = diff
    return result


def _barrier_outdated(barrier, excluded, readiness_threshold):
    """True when a pending barrier lacks exclusions asked for now or has another threshold (when it says)."""
    if set(excluded) - set(str(p) for p in barrier.get("exclude_partitions") or []):
        return True
    threshold = barrier.get("readiness_threshold")
    return threshold is not None and abs(float(threshold) - float(readiness_threshold)) > 1e-9


def _abort(client, definitions, bundle_id, result, check_mode):
    barrier = find_open_barrier(client, definitions, bundle_id)
    if barrier is None:
        result["msg"] = "no pending activation of %s to abort" % bundle_id
        return result
    result["barrier"] = barrier
    diff = {"before": {"barrier_state": barrier.get("state")}, "after": {"barrier_state": "aborted"}}
    if check_mode:
        result.update(changed=True, would_abort=True, diff=diff)
        return result
    response = client.request("POST", "activate", body={"bundle_id": bundle_id, "abort": True}, expected=(200, 201, 202))
    aborted = response.json if isinstance(response.json, dict) else {}
    result.update(changed=True, barrier=aborted or barrier, diff=diff)
    return result


# --------------------------------------------------------------------------- WAL replay jobs


def partitions_needing_replay(definitions, bundle_id=None):
    """Partition ids whose shadow (of ``bundle_id``, else of any non-active bundle) needs a WAL replay."""
    active = active_bundle_id(definitions)
    needing = set()
    for entry in definitions.get("bundles") or []:
        if bundle_id is not None and entry.get("bundle_id") != bundle_id:
            continue
        if bundle_id is None and entry.get("bundle_id") == active:
            continue
        needing.update(shadow_summary(entry)["needs_replay"])
    return sort_part_ids(needing)


def select_replay_partitions(client, part_ids=None, needs_replay_only=False, bundle_id=None):
    """The partitions a WAL replay job should cover, and why (a dict for the module result)."""
    requested = sort_part_ids(part_ids or [])
    if not needs_replay_only:
        if not requested:
            raise ControlPlaneError("give part_ids, or needs_replay_only: true to replay every partition whose "
                                    "shadow needs a WAL replay")
        return {"part_ids": requested, "needing_replay": None}
    definitions = get_definitions(client)
    if bundle_id is not None and find_bundle(definitions, bundle_id) is None:
        raise ControlPlaneError("bundle %s is not on the cluster; upload it with ceptra.backfill.bundle first" % bundle_id)
    needing = partitions_needing_replay(definitions, bundle_id)
    selected = [p for p in needing if not requested or p in requested]
    return {"part_ids": selected, "needing_replay": needing}


def start_replay_job(client, part_ids, reason):
    """POST /v1/replay for ``part_ids`` from the latest full checkpoint; return the job document."""
    body = {"part_ids": list(part_ids), "from": "latest_full_checkpoint", "reason": reason}
    response = client.request("POST", "replay_jobs", body=body, expected=(200, 201, 202))
    job = response.json if isinstance(response.json, dict) else {}
    if not job.get("job_id"):
        raise ControlPlaneError("the cluster accepted the WAL replay request but returned no job_id", response=job)
    return job


def replay_progress(job):
    """Per-partition ``{from_index, to_index, replayed_index, done}`` of a replay job document,
    plus ``events_done``/``events_total``/``status``, the figures the audit callback prints on
    each poll of a replay (``_progress_view``)."""
    progress = {}
    for part_id, info in _partitions.items(job.get("partitions")):
        info = info if isinstance(info, dict) else {}
        from_index = info.get("from_index")
        to_index = info.get("to_index")
        replayed = info.get("replayed_index")
        done = to_index is not None and replayed is not None and replayed >= to_index
        known = from_index is not None and to_index is not None
        progress[str(part_id)] = {
            "from_index": from_index,
            "to_index": to_index,
            "replayed_index": replayed,
            "done": done,
            "events_done": max(0, (replayed or from_index) - from_index) if known else 0,
            "events_total": max(0, to_index - from_index) if known else None,
            "status": "done" if done else ("failed" if job.get("state") == "failed" else "running"),
        }
    return progress


def job_result(job):
    """The module-result fields of a replay job document (progress figures included)."""
    partitions = replay_progress(job)
    totals = [p["events_total"] for p in partitions.values()]
    return {"job": job, "job_id": job.get("job_id"), "run_id": job.get("job_id"), "state": job.get("state"),
            "partitions": partitions, "done": job.get("state") in REPLAY_END_STATES,
            "events_done": sum(p["events_done"] for p in partitions.values()),
            "events_total": sum(totals) if None not in totals else None}


def find_running_job(client, part_ids):
    """A running replay job (named in the CP audit log) that covers every one of ``part_ids``, or None.

    So a run interrupted while its job ran waits for that job instead of starting a second one.
    """
    response = client.request("GET", "audit", query={"kind": "replay_job"}, expected=(200, 400, 403, 404))
    records = (response.json or {}).get("records") if response.status == 200 and isinstance(response.json, dict) else []
    for record in reversed(records or []):
        details = record.get("details") if isinstance(record, dict) else None
        if not isinstance(details, dict) or not details.get("job_id"):
            continue
        covered = set(str(p) for p in details.get("part_ids") or [])
        if not set(part_ids) <= covered:
            continue
        found = client.request("GET", "replay_job", params={"job_id": details["job_id"]}, expected=(200, 404))
        job = found.json if found.status == 200 and isinstance(found.json, dict) else None
        if job and job.get("state") == "running":
            job.setdefault("job_id", details["job_id"])
            return job
    return None


def wait_for_replay_job(client, job, timeout, interval, sleep=time.sleep, clock=time.monotonic):
    """Poll the replay job until it completes; raise ControlPlaneError when it fails or times out."""
    job_id = job["job_id"]

    def look():
        fresh = dict(client.get_json("replay_job", params={"job_id": job_id}) or {})
        fresh.setdefault("job_id", job_id)
        return fresh.get("state") in REPLAY_END_STATES, fresh

    poll = poll_until(look, timeout, interval, first=(job.get("state") in REPLAY_END_STATES, job),
                      sleep=sleep, clock=clock)
    job = poll.value
    if not poll.done:
        progress = replay_progress(job)
        lagging = ["%s (replayed %s of %s)" % (p, v["replayed_index"], v["to_index"])
                   for p, v in sorted(progress.items()) if not v["done"]]
        raise ControlPlaneError("timed out after %ss waiting for WAL replay job %s; unfinished: %s"
                                % (timeout, job_id, ", ".join(lagging) or "none named"), job=job)
    if job.get("state") == "failed":
        why = job.get("error") or "the cluster gave no error text"
        raise ControlPlaneError("WAL replay job %s failed: %s" % (job_id, why), job=job,
                                partitions=replay_progress(job))
    return job


def run_wal_replay(client, part_ids=None, needs_replay_only=False, bundle_id=None, reason="ceptra.backfill.wal_replay",
                   wait=True, timeout=600, interval=2, check_mode=False, job_id=None, sleep=time.sleep,
                   clock=time.monotonic):
    """Start (and by default wait for) a WAL replay job; return the module result.

    With ``job_id`` only report that job (one read; ``done`` says whether it ended; a failed
    job is an error). A running job that already covers the selected partitions (a previous,
    interrupted run started it) is waited for instead of starting a second one.
    """
    if job_id is not None:
        job = dict(client.get_json("replay_job", params={"job_id": job_id}) or {})
        job.setdefault("job_id", job_id)
        if job.get("state") == "failed":
            raise ControlPlaneError("WAL replay job %s failed: %s" % (job_id, job.get("error") or "no error text"),
                                    job=job, partitions=replay_progress(job))
        return dict(job_result(job), changed=False)
    selection = select_replay_partitions(client, part_ids, needs_replay_only, bundle_id)
    result = {"changed": False, "part_ids": selection["part_ids"], "job": None, "partitions": {}, "done": True}
    if selection["needing_replay"] is not None:
        result["needing_replay"] = selection["needing_replay"]
    if not selection["part_ids"]:
        result["msg"] = "no partition needs a WAL replay"
        return result
    job = find_running_job(client, selection["part_ids"])
    if job is not None:
        result["msg"] = "WAL replay job %s (started earlier) already covers partition(s) %s" % (
            job["job_id"], ", ".join(selection["part_ids"]))
        result["resumed"] = True
    if check_mode:
        result.update(changed=True, would_start=job is None)
        return result
    if job is None:
        job = start_replay_job(client, selection["part_ids"], reason)
    result.update(changed=True, job=job)
    if wait:
        job = wait_for_replay_job(client, job, timeout, interval, sleep=sleep, clock=clock)
    result.update(job_result(job))
    return result
