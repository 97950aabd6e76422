# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: metrics snapshots (fetch, save, load) and the deterministic snapshot diff.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal helpers of ceptra.backfill for TEST/ExportMetricsSnapshot (not a public API).

A snapshot looks like ``{"part_id", "applied_index", "metrics": {metric: {tier: {lane:
{pane_start_ns: state}}}}, "late": {...}, "digest"}``; unknown extra fields are tolerated.
The diff walks ``metrics`` level by level (metric, tier, lane, pane) and every other
compared section key by key, always in sorted order, so the same inputs give the same output.
"""

from __future__ import annotations

import json
import math
import os

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

# Level names of the ``metrics`` tree; deeper values (a pane's monoid state) compare whole.
METRIC_LEVELS = ("metric", "tier", "lane", "pane_start_ns")
DEFAULT_SECTIONS = ("metrics", "late")
FILE_FORMAT = "ceptra.backfill/metrics-snapshot/v1"


class SnapshotError(CeptraError):
    """A snapshot that cannot be fetched, read or compared; the message says what to fix."""

    context = ""  # the messages name the snapshot and the step


# --------------------------------------------------------------------------- ordering helpers


def _key_order(key):
    """Sort numeric keys numerically (pane starts, partition ids) and the rest as text."""
    text = str(key)
    body = text[1:] if text.startswith("-") else text
    if body.isdigit():
        return (0, int(text), "")
    return (1, 0, text)


def _sorted_keys(*mappings):
    keys = set()
    for mapping in mappings:
        keys.update(mapping)
    return sorted(keys, key=_key_order)


def _count_leaves(value, depth_left):
    """Number of panes (leaves at the pane level) under a subtree; 1 for a leaf."""
    if depth_left <= 0 or not isinstance(value, dict):
        return 1
    return sum(_count_leaves(child, depth_left - 1) for child in value.values()) or 0


# --------------------------------------------------------------------------- value comparison


def values_equal(left, right, tolerance=0.0):
    """Deep equality; numbers (not bools) may differ by ``tolerance`` (absolute)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right if isinstance(left, bool) and isinstance(right, bool) else False
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        if tolerance and not (isinstance(left, int) and isinstance(right, int)):
            if math.isnan(left) or math.isnan(right):
                return math.isnan(left) and math.isnan(right)
            return abs(left - right) <= tolerance
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(values_equal(left[k], right[k], tolerance) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(values_equal(a, b, tolerance) for a, b in zip(left, right))
    return left == right


# --------------------------------------------------------------------------- the diff


def _entry(section, path, levels):
    entry = {"section": section, "path": "/".join([section] + [str(p) for p in path])}
    for name, value in zip(levels, path):
        entry[name] = str(value)
    return entry


def _walk(section, left, right, levels, depth, path, tolerance, out):
    """Compare two subtrees; ``depth`` counts the named levels still to descend (-1: unlimited)."""
    descend = isinstance(left, dict) and isinstance(right, dict) and depth != 0
    if not descend:
        if not values_equal(left, right, tolerance):
            entry = _entry(section, path, levels)
            entry.update(left=left, right=right)
            out["value_differences"].append(entry)
        return
    for key in _sorted_keys(left, right):
        child_path = path + [key]
        if key not in right or key not in left:
            side = "only_left" if key not in right else "only_right"
            value = left[key] if side == "only_left" else right[key]
            entry = _entry(section, child_path, levels)
            remaining = depth - 1 if depth > 0 else 0
            if remaining > 0 and isinstance(value, dict):
                entry["panes"] = _count_leaves(value, remaining)
            else:
                entry["value"] = value
            out[side].append(entry)
            continue
        _walk(section, left[key], right[key], levels, depth - 1 if depth > 0 else -1, child_path, tolerance, out)


def diff_snapshots(left, right, sections=DEFAULT_SECTIONS, tolerance=0.0, max_entries=None):
    """Deterministic diff of two snapshots.

    Returns ``{"equal", "only_left", "only_right", "value_differences", "differing_metrics",
    "counts", "truncated", "digests"}``. ``only_left``/``only_right`` list metrics, tiers,
    lanes or panes present on one side (with a pane count or the value); value differences
    carry both values. ``max_entries`` caps each list (counts stay exact).
    """
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise SnapshotError("both snapshots must be JSON objects")
    out = {"only_left": [], "only_right": [], "value_differences": []}
    for section in sections:
        left_part = left.get(section, {})
        right_part = right.get(section, {})
        if section == "metrics":
            _walk(section, left_part or {}, right_part or {}, METRIC_LEVELS, len(METRIC_LEVELS), [], tolerance, out)
        else:
            _walk(section, left_part, right_part, (), -1, [], tolerance, out)
    counts = {name: len(entries) for name, entries in out.items()}
    differing = sorted({e["metric"] for entries in out.values() for e in entries if "metric" in e}, key=_key_order)
    truncated = False
    if max_entries is not None:
        for name in out:
            if len(out[name]) > max_entries:
                out[name] = out[name][:max_entries]
                truncated = True
    equal = not any(counts.values())
    return dict(out, equal=equal, counts=counts, differing_metrics=differing, truncated=truncated,
                digests={"left": left.get("digest"), "right": right.get("digest")})


def settled_view(snapshot, before_ns):
    """A copy of ``snapshot`` whose ``metrics`` keep only the panes that start before ``before_ns``.

    While live traffic flows, the newest panes of two clusters differ only by what is still in
    flight; comparing the settled panes (those before a cut-off both sides are past) compares
    what a replay can be held to. Pane keys that are not integers are kept.
    """
    if before_ns is None or not isinstance(snapshot, dict):
        return snapshot
    metrics = snapshot.get("metrics")
    if not isinstance(metrics, dict):
        return snapshot
    kept = {}
    for metric, tiers in metrics.items():
        if not isinstance(tiers, dict):
            kept[metric] = tiers
            continue
        kept[metric] = {}
        for tier, lanes in tiers.items():
            if not isinstance(lanes, dict):
                kept[metric][tier] = lanes
                continue
            kept[metric][tier] = {}
            for lane, panes in lanes.items():
                if not isinstance(panes, dict):
                    kept[metric][tier][lane] = panes
                    continue
                settled = {k: v for k, v in panes.items() if not _is_int_text(k) or int(k) < before_ns}
                if settled:
                    kept[metric][tier][lane] = settled
    return dict(snapshot, metrics=kept)


def window_panes(snapshot, start_ns, end_ns):
    """Per metric and tier, how many panes of ``snapshot`` start inside ``[start_ns, end_ns)``.

    Evidence that a replayed window holds state: ``{metric: {tier: panes}}`` (metrics and tiers
    without such a pane are left out).
    """
    counts = {}
    metrics = snapshot.get("metrics") if isinstance(snapshot, dict) else None
    for metric, tiers in sorted((metrics or {}).items()):
        for tier, lanes in sorted((tiers or {}).items() if isinstance(tiers, dict) else ()):
            panes = 0
            for lane_panes in (lanes.values() if isinstance(lanes, dict) else ()):
                if isinstance(lane_panes, dict):
                    panes += sum(1 for key in lane_panes if _is_int_text(key) and start_ns <= int(key) < end_ns)
            if panes:
                counts.setdefault(metric, {})[tier] = panes
    return counts


def _is_int_text(key):
    text = str(key)
    return (text[1:] if text.startswith("-") else text).isdigit()


def summarize_diff(diff, left_label="left", right_label="right"):
    """One sentence for people: what differs between the two snapshots."""
    if diff["equal"]:
        return "snapshots %s and %s are equal" % (left_label, right_label)
    counts = diff["counts"]
    text = ("snapshots %s and %s differ: %d only in %s, %d only in %s, %d value difference(s)"
            % (left_label, right_label, counts["only_left"], left_label, counts["only_right"], right_label,
               counts["value_differences"]))
    if diff["differing_metrics"]:
        text += "; metrics: %s" % ", ".join(diff["differing_metrics"][:20])
    return text


# --------------------------------------------------------------------------- fetching


def cluster_partitions(client):
    """Partition ids and test mode from /v1/state: ``(part_ids, test_mode)``."""
    state = client.get_json("state") or {}
    cluster = state.get("cluster") if isinstance(state.get("cluster"), dict) else {}
    part_ids = [part_id for part_id, _entry in _partitions.items(state.get("partitions"))]
    if not part_ids and isinstance(cluster.get("partitions"), int):
        part_ids = [str(i) for i in range(cluster["partitions"])]
    return _partitions.sort_ids(part_ids), cluster.get("test_mode")


def fetch_snapshot(client, part_id):
    """GET the metrics snapshot of one partition; a clear SnapshotError when test mode is off."""
    response = client.request("GET", "test_metrics_snapshot", query={"part_id": str(part_id)}, expected=(200, 404))
    if response.status == 404:
        body = response.json if isinstance(response.json, dict) else {}
        part_ids, test_mode = _state_or_unknown(client)
        if test_mode is True and part_ids and str(part_id) not in part_ids:
            raise SnapshotError("partition %s does not exist; the cluster has partitions %s"
                                % (part_id, ", ".join(part_ids)))
        if test_mode is True:
            raise SnapshotError("partition %s has no metrics snapshot (404: %s)"
                                % (part_id, body.get("error") or "not found"))
        raise SnapshotError("the cluster is not in test mode: the TEST/ExportMetricsSnapshot call "
                            "(metrics-snapshot test RPC) answered 404. Run the cluster (or the lab) with "
                            "test mode on (ceptra-lab serve --test-mode) to export snapshots")
    snapshot = response.json
    if not isinstance(snapshot, dict):
        raise SnapshotError("the metrics snapshot of partition %s is not a JSON object" % part_id)
    return snapshot


def _state_or_unknown(client):
    try:
        return cluster_partitions(client)
    except Exception:  # the 404 message matters more than why /v1/state failed; pylint: disable=broad-except
        return None, None


def fetch_snapshots(client, part_ids=None):
    """Snapshots of ``part_ids`` (default every partition of /v1/state) as ``{part_id: snapshot}``."""
    if not part_ids:
        part_ids, test_mode = cluster_partitions(client)
        if test_mode is False:
            raise SnapshotError("the cluster is not in test mode (/v1/state cluster.test_mode is false); metrics "
                                "snapshots are a test RPC: run the cluster (or the lab) with test mode on")
        if not part_ids:
            raise SnapshotError("/v1/state lists no partitions; name them with part_ids")
    return {str(p): fetch_snapshot(client, p) for p in part_ids}


# --------------------------------------------------------------------------- files


def render_snapshot_file(snapshots):
    """The saved-file text for ``{part_id: snapshot}``: stable JSON so equal content gives equal bytes."""
    document = {"format": FILE_FORMAT, "snapshots": {str(k): snapshots[k] for k in snapshots}}
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def snapshots_from_document(document, origin="file"):
    """``{part_id: snapshot}`` from a saved file, a single snapshot, or a list of snapshots."""
    if isinstance(document, dict) and isinstance(document.get("snapshots"), dict):
        return {str(k): v for k, v in document["snapshots"].items()}
    if isinstance(document, dict) and "metrics" in document:
        return {_partitions.entry_id(document, ""): document}
    if isinstance(document, list) and all(isinstance(s, dict) and "metrics" in s for s in document):
        return dict(_partitions.items(document))
    raise SnapshotError("%s holds neither a saved snapshot file ({\"snapshots\": {...}}) nor a metrics snapshot "
                        "({\"metrics\": ...})" % origin)


def load_snapshot_file(path, part_id=None):
    """Load one snapshot from a saved file; ``part_id`` picks one when the file holds several."""
    if not os.path.isfile(path):
        raise SnapshotError("snapshot file %s does not exist (paths are on the host that runs the module)" % path)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SnapshotError("cannot read snapshot file %s as JSON: %s" % (path, exc))
    snapshots = snapshots_from_document(document, path)
    if part_id is not None:
        if str(part_id) not in snapshots:
            raise SnapshotError("snapshot file %s has no partition %s (it has %s)"
                                % (path, part_id, ", ".join(sorted(snapshots, key=_key_order)) or "none"))
        return snapshots[str(part_id)]
    if len(snapshots) != 1:
        raise SnapshotError("snapshot file %s holds partitions %s: say which one with a part_id"
                            % (path, ", ".join(sorted(snapshots, key=_key_order))))
    return next(iter(snapshots.values()))


def read_text_or_none(path):
    """The file's text, or None when it does not exist (what ``dest`` held before a write)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError("cannot read %s: %s" % (path, exc))


def digests_of_text(text):
    """``{part_id: digest}`` of a saved snapshot file's text (for a readable --diff); {} when unreadable."""
    if text is None:
        return {}
    try:
        snapshots = snapshots_from_document(json.loads(text))
    except (ValueError, SnapshotError):
        return {"(unreadable)": None}
    return {k: v.get("digest") for k, v in sorted(snapshots.items(), key=lambda kv: _key_order(kv[0]))}
