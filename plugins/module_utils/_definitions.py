# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: definition bundles (load, validate, upload) and shadow warmup.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal helpers of ceptra.backfill for definition bundles (not a public API).

Every function that talks to the cluster takes the shared client (``_client.CeptraClient``:
``request`` and ``get_json``); the waits take ``sleep`` and ``clock`` (``_wait.poll_until``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until

try:
    import yaml

    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as _yaml_exc:  # pragma: no cover - depends on the target host
    yaml = None
    HAS_YAML = False
    YAML_IMPORT_ERROR = _yaml_exc

# Per-partition shadow classification: what an operator has to do about each partition.
READY = "ready"
PENDING = "pending"
NEEDS_REPLAY = "needs_replay"
FAILED = "failed"

FAILED_SHADOW_STATES = ("SHADOW_FAILED", "SHADOW_TIMEOUT")


class ControlPlaneError(CeptraError):
    """A control-plane step that cannot go on; ``message`` says what to fix, ``details`` goes to the result."""

    context = ""  # the messages name the bundle, barrier or job and what to do


class MissingYamlError(ControlPlaneError):
    """The bundle is YAML and PyYAML is not installed on the host that runs the module (the
    message is Ansible's missing-library text; ``details["exception"]`` the import error)."""


class BundleSyntaxError(ControlPlaneError):
    """The bundle text does not parse; ``text`` keeps it so the cluster can explain the problem."""

    def __init__(self, message, text, origin="content"):
        super().__init__(message)
        self.text = text
        self.origin = origin


# --------------------------------------------------------------------------- loading


def load_bundle(src=None, content=None):
    """Return the bundle as a dict, from a file path ``src`` or a string ``content`` (JSON or YAML)."""
    if (src is None) == (content is None):
        raise ControlPlaneError("give exactly one of src (a bundle file) or content (the bundle text)")
    origin = "content"
    if src is not None:
        origin = src
        if not os.path.isfile(src):
            raise ControlPlaneError("bundle file %s does not exist (src is a path on the host that runs the module)" % src)
        try:
            with open(src, "r", encoding="utf-8") as handle:
                content = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ControlPlaneError("cannot read bundle file %s: %s" % (src, exc))
    if isinstance(content, dict):
        bundle = content
    elif isinstance(content, str):
        bundle = _parse_bundle_text(content, origin)
    else:
        # a raw option: YAML turns `content: 12345` into a number, `content: [a]` into a list
        raise ControlPlaneError("bundle content must be the bundle as YAML or JSON text or a mapping, got %s %s; "
                                "quote it or read the file with src" % (type(content).__name__, ("%r" % (content,))[:80]))
    if not isinstance(bundle, dict) or not bundle:
        raise ControlPlaneError("bundle from %s must be a mapping (a YAML or JSON object), got %s"
                                % (origin, type(bundle).__name__))
    return bundle


def _parse_bundle_text(text, origin):
    if not text or not text.strip():
        raise ControlPlaneError("bundle from %s is empty" % origin)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BundleSyntaxError("bundle from %s is not valid JSON: %s" % (origin, exc), text, origin)
    if not HAS_YAML:
        raise MissingYamlError(missing_required_lib("PyYAML", reason="bundle from %s is YAML; PyYAML is needed to read it"
                                                    % origin), exception=str(YAML_IMPORT_ERROR))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BundleSyntaxError("bundle from %s is not valid YAML: %s" % (origin, " ".join(str(exc).split())), text, origin)


def load_bundle_explained(client, src=None, content=None):
    """:func:`load_bundle`, with the cluster's validator explaining a bundle that does not parse."""
    try:
        return load_bundle(src=src, content=content)
    except BundleSyntaxError as err:
        raise explain_syntax_error(client, err) from None


def json_ready(value):
    """Return ``value`` with YAML-only scalars (dates, sets) turned into JSON-compatible ones."""
    return json.loads(json.dumps(value, default=str))


def bundle_name(bundle):
    """The bundle's name (``bundle.name``, else ``workflow.name``), or None."""
    for section in ("bundle", "workflow"):
        part = bundle.get(section)
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            return part["name"]
    return None


def expected_bundle_id(bundle):
    """The id the cluster gives this bundle: ``name@sha256(canonical JSON)[:12]`` (see interfaces.md)."""
    canonical = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
    header = bundle.get("bundle") if isinstance(bundle.get("bundle"), dict) else {}
    return "%s@%s" % (header.get("name", "bundle"), digest)


# --------------------------------------------------------------------------- validate / upload


def format_violations(violations):
    """One line per violation: ``path: message``."""
    lines = []
    for item in violations or []:
        if isinstance(item, dict):
            lines.append("%s: %s" % (item.get("path") or "(bundle)", item.get("message") or item))
        else:
            lines.append(str(item))
    return "; ".join(lines)


def explain_syntax_error(client, err):
    """Ask the cluster's validator about a bundle that does not parse here; return a fuller error.

    The cluster's diagnostics name YAML traps (``key:{`` without a space, cut-off multi-line
    scalars) more helpfully than the parser's own message.
    """
    try:
        response = client.request("POST", "definitions_validate", body=err.text, expected=(200, 400, 415, 422))
    except Exception:  # the local message is still useful; pylint: disable=broad-except
        return err
    body = response.json if isinstance(response.json, dict) else {}
    violations = body.get("violations") or []
    if response.status != 422 or not violations:
        return err
    # The cluster's diagnostics replace the parser's terse message, which stays in the result.
    return ControlPlaneError("bundle from %s does not parse; the cluster's validator says: %s"
                             % (err.origin, format_violations(violations)), violations=violations,
                             parser_error=err.message)


def validate_bundle(client, bundle):
    """POST the bundle to the validate route; return the report, raise ControlPlaneError on 422."""
    response = client.request("POST", "definitions_validate", body=bundle, expected=(200, 422))
    body = response.json if isinstance(response.json, dict) else {}
    if response.status == 422:
        violations = body.get("violations") or []
        summary = format_violations(violations) or body.get("error") or "no details given"
        raise ControlPlaneError(
            "the cluster rejected the bundle %s: %s" % (bundle_name(bundle) or "", summary),
            violations=violations, report=body)
    return body


def get_definitions(client):
    """GET /v1/definitions, normalised: ``bundles`` is always a list and ``active`` a dict or None."""
    doc = client.get_json("definitions") or {}
    bundles = doc.get("bundles") or []
    if isinstance(bundles, dict):  # tolerate a map keyed by bundle_id
        bundles = [dict(value, bundle_id=value.get("bundle_id", key)) for key, value in bundles.items()]
    active = doc.get("active") if isinstance(doc.get("active"), dict) else None
    if active is not None and not active.get("bundle_id"):
        active = None
    return dict(doc, bundles=bundles, active=active)


def find_bundle(definitions, bundle_id):
    """Return the ``bundles`` entry with ``bundle_id`` or None."""
    for entry in definitions.get("bundles") or []:
        if entry.get("bundle_id") == bundle_id:
            return entry
    return None


def active_bundle_id(definitions):
    """The active bundle's id, or None."""
    active = definitions.get("active")
    return active.get("bundle_id") if active else None


def ensure_bundle(client, bundle, state="present", check_mode=False):
    """Validate the bundle and, for ``state=present``, upload it unless the cluster already has it.

    Returns the module result (``changed``, ``bundle_id``, ``report``, ``uploaded``, ``diff``).
    """
    bundle = json_ready(bundle)
    report = validate_bundle(client, bundle)
    # The cluster may name the id in its report; otherwise compute it as the cluster does.
    bundle_id = report.get("bundle_id") or expected_bundle_id(bundle)
    result = {"changed": False, "bundle_id": bundle_id, "bundle_name": report.get("bundle_name") or bundle_name(bundle),
              "report": report, "warnings_from_cluster": list(report.get("warnings") or []), "uploaded": False}
    if state == "validated":
        return result
    before = get_definitions(client)
    before_ids = sorted(entry.get("bundle_id") for entry in before["bundles"] if entry.get("bundle_id"))
    if bundle_id in before_ids:
        result["state"] = (find_bundle(before, bundle_id) or {}).get("state")
        return result
    if check_mode:
        result.update(changed=True, would_upload=True,
                      diff={"before": {"bundles": before_ids}, "after": {"bundles": sorted(before_ids + [bundle_id])}})
        return result
    response = client.request("POST", "definitions", body=bundle, expected=(200, 201, 202))
    uploaded = response.json if isinstance(response.json, dict) else {}
    bundle_id = uploaded.get("bundle_id") or bundle_id
    # Re-uploading an identical bundle is a no-op on the cluster: trust its answer over our id.
    changed = bundle_id not in before_ids
    result.update(changed=changed, uploaded=changed, bundle_id=bundle_id, state=uploaded.get("state"),
                  def_version=uploaded.get("def_version", report.get("def_version")),
                  diff={"before": {"bundles": before_ids}, "after": {"bundles": sorted(set(before_ids + [bundle_id]))}})
    return result


# --------------------------------------------------------------------------- shadow warmup


def classify_shadow(info):
    """Classify one partition's shadow of a bundle: ready, pending, needs_replay or failed."""
    cep_state = info.get("cep_shadow_state")
    apply_state = info.get("shadow_apply_state")
    if cep_state in FAILED_SHADOW_STATES or (cep_state is None and apply_state == "Expired"):
        return FAILED
    if cep_state == "SHADOW_READY" or (cep_state is None and apply_state == "Ready"):
        return READY
    if info.get("needs_replay") or cep_state == "SHADOW_WAITING_FOR_WAL":
        return NEEDS_REPLAY
    return PENDING


sort_part_ids = _partitions.sort_ids


def shadow_summary(bundle_entry, part_ids=None):
    """Per-partition shadow state of one bundle plus the partition lists an operator acts on.

    ``part_ids`` limits the summary; a requested partition the bundle does not list is
    reported under ``unknown_partitions``.
    """
    partitions = {}
    for part_id, info in _partitions.items(bundle_entry.get("partitions")):
        info = info if isinstance(info, dict) else {}
        partitions[part_id] = {
            "shadow_apply_state": info.get("shadow_apply_state"),
            "cep_shadow_state": info.get("cep_shadow_state"),
            "needs_replay": bool(info.get("needs_replay")),
            "warmup_ready_ratio": info.get("warmup_ready_ratio"),
            "status": classify_shadow(info),
        }
    unknown = []
    listed = sort_part_ids(partitions)
    if part_ids:
        wanted = {str(p) for p in part_ids}
        unknown = sort_part_ids(wanted - set(partitions))
        partitions = {p: v for p, v in partitions.items() if p in wanted}
    groups = {READY: [], PENDING: [], NEEDS_REPLAY: [], FAILED: []}
    for part_id in sort_part_ids(partitions):
        groups[partitions[part_id]["status"]].append(part_id)
    return {
        "bundle_id": bundle_entry.get("bundle_id"),
        "state": bundle_entry.get("state"),
        "partitions": partitions,
        "ready_partitions": groups[READY],
        "pending_partitions": groups[PENDING],
        "needs_replay": groups[NEEDS_REPLAY],
        "failed_partitions": groups[FAILED],
        "unknown_partitions": unknown,
        "listed_partitions": listed,
        "all_ready": bool(partitions) and len(groups[READY]) == len(partitions) and not unknown,
    }


def unknown_shadow_error(summary, **details):
    """ControlPlaneError for requested partitions the bundle lists no shadow for, naming those it lists."""
    return ControlPlaneError(_partitions.describe_unknown(
        summary["unknown_partitions"], summary["listed_partitions"],
        "bundle %s (GET /v1/definitions)" % summary["bundle_id"]), **details)


def describe_partitions(summary, part_ids):
    """``"1 (SHADOW_FAILED), 3 (Pending)"`` for the given partitions of a shadow summary."""
    parts = []
    for part_id in part_ids:
        info = summary["partitions"].get(part_id, {})
        state = info.get("cep_shadow_state") or info.get("shadow_apply_state") or "unknown"
        if info.get("needs_replay") and state != "SHADOW_WAITING_FOR_WAL":
            state += ", needs WAL replay"
        parts.append("%s (%s)" % (part_id, state))
    return ", ".join(parts)


def wait_for_shadow(client, bundle_id, part_ids=None, wait_for="settled", timeout=300, interval=2,
                    sleep=time.sleep, clock=time.monotonic):
    """Poll /v1/definitions until the bundle's shadows are settled (or all ready); return the summary.

    ``settled``: every partition is ready, needs a WAL replay, or failed (none can progress on
    its own any more). ``ready``: every partition is ready; a failed partition or one that
    needs a WAL replay ends the wait at once with an error naming what to do.
    Raises ControlPlaneError naming the partitions still pending when ``timeout`` passes.
    """
    numbers = itertools.count(1)

    def look():
        summary = bundle_shadow(client, bundle_id, part_ids)
        summary["polls"] = next(numbers)
        if summary["unknown_partitions"]:
            raise unknown_shadow_error(summary, shadow=summary)     # partitions do not appear by waiting
        stuck = summary["needs_replay"] + summary["failed_partitions"]
        if wait_for == "ready" and stuck:
            raise ControlPlaneError(
                "bundle %s cannot finish shadow warmup on its own on partition(s) %s: run "
                "ceptra.backfill.wal_replay for the ones that need a WAL replay, and exclude failed "
                "ones at activation or abort it" % (bundle_id, describe_partitions(summary, sort_part_ids(stuck))),
                shadow=summary)
        return not summary["pending_partitions"] and (wait_for != "ready" or summary["all_ready"]), summary

    poll = poll_until(look, timeout, interval, sleep=sleep, clock=clock)
    summary = poll.value
    if not poll.done:
        raise ControlPlaneError(
            "timed out after %ss waiting for the shadow warmup of bundle %s; still warming: %s"
            % (timeout, bundle_id, describe_partitions(summary, summary["pending_partitions"])), shadow=summary)
    return summary


def bundle_shadow(client, bundle_id, part_ids=None):
    """Fetch /v1/definitions once and return the shadow summary of ``bundle_id``."""
    definitions = get_definitions(client)
    entry = find_bundle(definitions, bundle_id)
    if entry is None:
        known = ", ".join(e.get("bundle_id") or "?" for e in definitions["bundles"]) or "none"
        raise ControlPlaneError("bundle %s is not on the cluster (uploaded bundles: %s); upload it with "
                                "ceptra.backfill.bundle first" % (bundle_id, known))
    summary = shadow_summary(entry, part_ids)
    summary["active"] = bundle_id == active_bundle_id(definitions)
    return summary
