# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the config manager (override ledger, validity windows, revert, sweep).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the config manager; see docs/config-manager.md.

A named override set is a partial config staged with read-modify-write under ``If-Match``
together with its ledger entry in ``annotations["ceptra.backfill/overrides"][name]`` (one
PATCH), so any host can see, revert or expire it. Everything here takes the shared client
(``_client.CeptraClient``: ``request()``/``get_json()``) and a clock:
pure planning (``plan_stage``/``plan_revert``), the If-Match transaction and the
``ConfigManager`` the three modules call. The ledger entry format, paths and validity windows
live in ``_config_ledger``; the checks that decide whether an override is allowed (bounds,
known keys, dedup shrink, lane budget) live in ``_config_rules``.
"""

from __future__ import annotations

import copy
import re
import time
import uuid

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils import _definitions
from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity, write_record
from ansible_collections.ceptra.backfill.plugins.module_utils._config_ledger import (
    LEDGER_KEY,
    ConfigManagerError,
    checked_entry,
    delete_path,
    encode,
    entry_expiry,
    flatten_settings,
    format_ts,
    get_path,
    ledger_of,
    ledger_path,
    storable,
    store_ledger,
    touched_value,
    without_ledger,
    write_leaf,
)
from ansible_collections.ceptra.backfill.plugins.module_utils._config_rules import (
    dedup_shrink_violations,
    lane_budget,
    lane_model_from_definitions,
    lane_model_from_report,
    partition_ids,
    refuse,
    validate_leaves,
)

MAX_CAS_ATTEMPTS = 5
# Ledger fields that record bookkeeping, not the override's meaning (ignored by idempotency).
_BOOKKEEPING = ("updated_at", "updated_by", "config_version_after")


# --------------------------------------------------------------------------- plans (pure)


class Plan:
    """What one transaction would do: the new config, the top-level patch and the report."""

    def __init__(self, config, new_config, touched, action, entry_before=None, entry_after=None,
                 conflicts=None, handed_over=None, restored=None):
        self.config = config
        self.new_config = new_config
        self.touched = touched
        self.action = action
        self.entry_before = entry_before
        self.entry_after = entry_after
        self.conflicts = conflicts or []
        self.handed_over = handed_over or {}
        self.restored = restored or []
        self.patch = top_level_patch(config, new_config)
        self.changed = bool(self.patch)
        self.version = None  # the config version the plan was computed on (set by run_transaction)


def top_level_patch(old, new):
    """Merge patch sending, per changed top-level key, its complete new value.

    Keys deleted inside a nested object are sent as explicit ``null`` so RFC 7396 deep merge
    removes them; a top-level-merge server stores the object as sent (see verify_written).
    """
    patch = {}
    for key in set(old) | set(new):
        if key not in new:
            patch[key] = None
        elif key not in old or old[key] != new[key]:
            patch[key] = _with_deletions(old.get(key), new[key])
    return patch


def _with_deletions(old, new):
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    merged = {key: _with_deletions(old.get(key), value) for key, value in new.items()}
    merged.update({key: None for key in old if key not in new})
    return merged


def _give_back(new_config, entry, key, others):
    """Restore one key of ``entry``; returns ("restored"|"handed_over"|"conflict", detail)."""
    expected = entry["after"][key]
    current = encode(get_path(new_config, key))
    # A later override stacked on this key (its before is our after) keeps the key and
    # inherits our original value; checked first because it may have set the same value.
    for other_name in sorted(others):
        other_before = others[other_name].get("before") if isinstance(others[other_name], dict) else None
        if isinstance(other_before, dict) and key in other_before and other_before[key] == expected:
            other_before[key] = entry["before"][key]
            return "handed_over", other_name
    if current == expected:
        write_leaf(new_config, key, entry["before"][key])
        return "restored", None
    return "conflict", {"key": key, "expected": expected, "current": current, "before": entry["before"][key]}


def _prune_created(new_config, created, others):
    """Delete objects an override created that are now empty; hand non-empty ones to their users."""
    for path in sorted(set(created), key=lambda item: -item.count(".")):
        value = get_path(new_config, path)
        if value == {}:
            delete_path(new_config, path)
        elif isinstance(value, dict):
            for other in others.values():
                if isinstance(other, dict) and isinstance(other.get("after"), dict) and any(key.startswith(path + ".") for key in other.get("after", {})):
                    other.setdefault("created_containers", [])
                    if path not in other["created_containers"]:
                        other["created_containers"].append(path)


def _release(new_config, entry, keys, others):
    """Give back ``keys`` of ``entry``; returns (restored keys, conflicts, handed_over)."""
    restored, conflicts, handed = [], [], {}
    for key in sorted(keys):
        outcome, detail = _give_back(new_config, entry, key, others)
        if outcome == "restored":
            restored.append(key)
        elif outcome == "handed_over":
            handed[key] = detail
        else:
            conflicts.append(detail)
    return restored, conflicts, handed


def plan_stage(config, version, name, settings, window, now, actor, reason=None):
    """Plan staging (or updating) override ``name`` with ``settings`` on ``config`` at ``version``."""
    leaves = flatten_settings(settings)
    ledger = copy.deepcopy(ledger_of(config))
    old = ledger.pop(name, None)
    if old is not None:
        checked_entry(name, old)
    expires = window.expiry(old, now)
    if expires <= now:
        raise ConfigManagerError("override %s would expire at %s, which is not in the future" % (name, format_ts(expires)))
    new_config = copy.deepcopy(config)
    conflicts, handed, restored = [], {}, []
    created = list(old.get("created_containers", [])) if old else []
    if old:
        # Keys the previous version of this override held but the new settings drop go back.
        dropped = [key for key in old.get("after", {}) if key not in leaves]
        restored, conflicts, handed = _release(new_config, old, dropped, ledger)
        _prune_created(new_config, created, ledger)
        created = [path for path in created if isinstance(get_path(new_config, path), dict)]
    before, after = {}, {}
    for key, value in sorted(leaves.items()):
        current = get_path(config, key)
        if isinstance(current, dict):
            raise ConfigManagerError("settings.%s would replace an object of the config with a single value" % key)
        # An override that already holds a key keeps the ORIGINAL value from before it.
        before[key] = old["before"][key] if old and key in old.get("before", {}) else encode(current)
        after[key] = encode(value)
        created.extend(write_leaf(new_config, key, after[key]))
    fresh = old is None or entry_expiry(old) <= now
    entry = {
        "name": name,
        "who": actor if fresh else old.get("who", actor),
        "created_at": format_ts(now) if fresh else old.get("created_at"),
        "expires_at": format_ts(expires),
        "reason": reason if reason is not None else (old or {}).get("reason", ""),
        "settings": storable(settings),
        "before": before,
        "after": after,
        "created_containers": sorted(set(created)),
        # Versions and before-values describe the config before the FIRST staging.
        "config_version_before": old.get("config_version_before", version) if old else version,
    }
    if window.valid_for is not None:
        entry["valid_for"] = window.valid_for
    if old is not None and _meaning(old) == _meaning(entry) and without_ledger(new_config) == without_ledger(config):
        return Plan(config, config, _touched(leaves, old, name), "unchanged", old, old)
    entry.update(updated_at=format_ts(now), updated_by=actor, config_version_after=_next_version(version))
    ledger[name] = entry
    store_ledger(new_config, ledger)
    if old is None:
        action = "created"
    elif fresh:
        action = "restaged"
    elif old.get("settings") == entry["settings"] and without_ledger(new_config) == without_ledger(config):
        action = "extended" if old.get("expires_at") != entry["expires_at"] else "updated"
    else:
        action = "updated"
    return Plan(config, new_config, _touched(leaves, old, name), action, old, entry, conflicts, handed, restored)


def _meaning(entry):
    return {key: value for key, value in entry.items() if key not in _BOOKKEEPING}


def _next_version(version):
    # The CP numbers versions 1, 2, 3...; the ledger is written in the same PATCH, so the
    # version it creates is predicted here and checked against the PATCH response.
    return version + 1 if isinstance(version, int) and not isinstance(version, bool) else None


def _touched(leaves, old, name):
    keys = set(leaves) | set((old or {}).get("after", {}))
    return sorted(keys) + [ledger_path(name)]


def plan_revert(config, version, name):
    """Plan reverting override ``name``: restore its keys, report conflicts, drop its ledger entry."""
    ledger = copy.deepcopy(ledger_of(config))
    old = ledger.pop(name, None)
    if old is None:
        return Plan(config, config, [ledger_path(name)], "absent")
    checked_entry(name, old)
    new_config = copy.deepcopy(config)
    restored, conflicts, handed = _release(new_config, old, list(old.get("after", {})), ledger)
    _prune_created(new_config, old.get("created_containers", []), ledger)
    store_ledger(new_config, ledger)
    return Plan(config, new_config, _touched({}, old, name), "reverted", old, None, conflicts, handed, restored)


# --------------------------------------------------------------------------- transactions


def read_config(client):
    """``(config, version)`` from GET /v1/config (version from the body, else the ETag)."""
    response = client.request("GET", "config")
    body = response.json if isinstance(response.json, dict) else {}
    version = body.get("version")
    if version is None:
        etag = (response.headers or {}).get("ETag") or ""
        version = etag.replace("W/", "").strip('" ') or None
        version = int(version) if version and version.isdigit() else version
    config = body.get("config")
    if not isinstance(config, dict) or version is None:
        raise ConfigManagerError("GET /v1/config answered without a config object and version; is url a CEPtra control plane?")
    return config, version


def run_transaction(client, build, check_mode=False, max_attempts=MAX_CAS_ATTEMPTS, start=None):
    """Run ``build(config, version) -> Plan`` under If-Match; returns ``(plan, patch_response)``.

    On 412 the config is read again; the plan is rebuilt and retried only when none of the
    keys it touches changed underneath, else ConfigManagerError names the keys.
    """
    config, version = start if start is not None else read_config(client)
    for _attempt in range(max_attempts):
        plan = build(config, version)
        plan.version = version
        if not plan.changed or check_mode:
            return plan, None
        try:
            response = client.request("PATCH", "config", body=plan.patch, headers={"If-Match": '"%s"' % version},
                                      idempotency_key=str(uuid.uuid4()))
        except CeptraError as err:
            if err.status != 412:
                raise
            fresh, fresh_version = read_config(client)
            moved = [key for key in plan.touched if touched_value(config, key) != touched_value(fresh, key)]
            if moved:
                names = ["ledger entry %s" % key[1] if isinstance(key, tuple) else key for key in moved]
                raise ConfigManagerError(
                    "conflict: the config changed underneath (version %s -> %s) on keys this override touches: %s; "
                    "nothing was written, read the config and retry" % (version, fresh_version, ", ".join(names)),
                    conflict_keys=names, config_version=fresh_version) from None
            config, version = fresh, fresh_version
            continue
        body = response.json if isinstance(response.json, dict) else {}
        verify_written(client, plan, body)
        return plan, body
    raise ConfigManagerError("gave up after %d attempts: the config version kept moving (412 each time); retry later"
                             % max_attempts)


def verify_written(client, plan, body):
    """After a PATCH that deleted nested keys, make sure a top-level-merge server did not keep nulls."""
    if not any(_has_null(value) for value in plan.patch.values() if isinstance(value, dict)):
        return
    config, version = read_config(client)
    fix = {key: plan.new_config[key] for key in plan.patch
           if key in plan.new_config and config.get(key) != plan.new_config[key] and _has_null(config.get(key))}
    if fix:
        response = client.request("PATCH", "config", body=fix, headers={"If-Match": '"%s"' % version},
                                  idempotency_key=str(uuid.uuid4()))
        body.update(response.json if isinstance(response.json, dict) else {})


def _has_null(value):
    if value is None:
        return True
    return isinstance(value, dict) and any(_has_null(item) for item in value.values())

# --------------------------------------------------------------------------- the manager


class ConfigManager:
    """Stage, revert, sweep and list named overrides through a client-like object."""

    def __init__(self, client, actor=None, check_mode=False, audit=True, clock=time.time):
        self.client = client
        self.actor = actor or operator_identity()
        self.check_mode = check_mode
        self.audit = audit
        self.clock = clock
        self.warnings = []

    # ---- stage
    def stage(self, name, settings, window, reason=None, bundle_src=None, bundle_content=None):
        """Stage or update override ``name``; returns the module result.

        ``bundle_src`` (a path) or ``bundle_content`` (text or mapping) is the active bundle,
        used to project lanes when ``settings`` touch ``lane_domains``.
        """
        _check_name(name)
        now = self.clock()
        leaves = flatten_settings(settings)
        config, version = read_config(self.client)
        known_partitions = partition_ids(self.client) if any(key.startswith("partitions.") for key in leaves) else None
        violations = validate_leaves(leaves, known_top_level=set(config), partition_ids=known_partitions)
        violations += dedup_shrink_violations(self.client, leaves, config)
        if violations:
            raise refuse(violations)
        lane_model, lanes_checked = None, any(key.startswith("lane_domains.") for key in leaves)
        if lanes_checked:
            lane_model = self._lane_model(bundle_src, bundle_content)
        lane_info = {}

        def build(cfg, ver):
            plan = plan_stage(cfg, ver, name, settings, window, now, self.actor, reason)
            if lanes_checked:
                bad, warn, projections = lane_budget(plan.new_config.get("lane_domains"), lane_model)
                if bad:
                    raise refuse(bad, warn)
                lane_info.update(warnings=warn, projections=projections)
            return plan

        plan, response = run_transaction(self.client, build, self.check_mode, start=(config, version))
        self.warnings.extend(lane_info.get("warnings", []))
        result = self._result(plan, response)
        if lanes_checked:
            result["lane_projections"] = lane_info.get("projections", [])
        entry = plan.entry_after
        result.update(override=entry, expires_at=entry["expires_at"],
                      remaining_s=round(entry_expiry(entry) - now, 3))
        if response is not None and entry.get("config_version_after") not in (None, result["config_version"]):
            self.warnings.append("the ledger predicted config version %s but the cluster created %s"
                                 % (entry.get("config_version_after"), result["config_version"]))
        self._audit(plan, result)
        return result

    # ---- revert
    def revert(self, name, cause="revert", start=None):
        """Revert override ``name`` (idempotent: unknown name -> changed false)."""
        _check_name(name)
        plan, response = run_transaction(self.client, lambda cfg, ver: plan_revert(cfg, ver, name),
                                         self.check_mode, start=start)
        result = self._result(plan, response)
        result["override"] = plan.entry_before
        if plan.changed:
            result["action"] = "expired" if cause == "expired" else "reverted"
        self._audit(plan, result)
        return result

    # ---- sweep
    def sweep(self):
        """Revert every override whose expiry has passed; report reverted, conflicts, failed, remaining."""
        now = self.clock()
        config, version = read_config(self.client)
        ledger = ledger_of(config)
        due = sorted(name for name, entry in ledger.items() if entry_expiry(entry) <= now)
        reverted, conflicts, failed, versions = [], {}, {}, []
        start = (config, version)
        for name in due:
            try:
                result = self.revert(name, cause="expired", start=start)
            except (ConfigManagerError, CeptraError) as err:
                failed[name] = err.message
                start = None
                continue
            # The next revert reads afresh when this one wrote.
            start = None if result["changed"] and not self.check_mode else start
            if result["changed"]:
                reverted.append(name)
                versions.append(result["config_version"])
            if result["conflicts"]:
                conflicts[name] = result["conflicts"]
        remaining = [_summary(name, entry, now) for name, entry in sorted(ledger.items()) if name not in due]
        return {"changed": bool(reverted), "reverted": reverted, "conflicts": conflicts, "failed": failed,
                "remaining": remaining, "config_versions": versions, "warnings": list(self.warnings),
                "now": format_ts(now)}

    # ---- info
    def info(self, names=None):
        """Current config, version and the ledger with remaining validity per override."""
        now = self.clock()
        config, version = read_config(self.client)
        ledger = ledger_of(config)
        overrides = [dict(entry if isinstance(entry, dict) else {}, **_summary(name, entry, now))
                     for name, entry in sorted(ledger.items())
                     if not names or name in names]
        return {"changed": False, "config": config, "config_version": version, "overrides": overrides,
                "expired": [item["name"] for item in overrides if item["expired"]], "now": format_ts(now)}

    # ---- helpers
    def _result(self, plan, response):
        for warning in (response or {}).get("warnings") or []:
            self.warnings.append("the cluster warned: %s" % (warning.get("message") if isinstance(warning, dict) else warning))
        new_version = (response or {}).get("version", plan.version) if plan.changed and response else plan.version
        return {
            "changed": plan.changed,
            "action": plan.action,
            "config_version": new_version,
            "previous_version": plan.version,
            "changed_keys": sorted((response or {}).get("changed_keys") or _changed_leaf_keys(plan)),
            "restored_keys": plan.restored,
            "conflicts": plan.conflicts,
            "handed_over": plan.handed_over,
            "warnings": self.warnings,
            "diff": {"before": {"config": without_ledger(plan.config), "override": plan.entry_before},
                     "after": {"config": without_ledger(plan.new_config), "override": plan.entry_after}},
        }

    def _audit(self, plan, result):
        if not (self.audit and plan.changed and not self.check_mode):
            return
        entry = plan.entry_after or plan.entry_before or {}
        details = {"action": result["action"], "name": entry.get("name"), "who": self.actor,
                   "owner": entry.get("who"), "expires_at": entry.get("expires_at"),
                   "reason": entry.get("reason"), "keys": sorted(entry.get("after", {})),
                   "config_version": result["config_version"], "conflicts": plan.conflicts}
        try:
            write_record(self.client, "override", details)
        except CeptraError as err:
            # The config change already happened; the CP recorded it too. Say so, don't fail.
            self.warnings.append("the override change was applied but the audit record failed: %s" % err.message)

    def _lane_model(self, bundle_src, bundle_content):
        """What lanes the active bundle (or the one given) projects, for the lane-budget check."""
        try:
            definitions = _definitions.get_definitions(self.client)
            active = _definitions.active_bundle_id(definitions)
            if bundle_src is None and bundle_content is None:
                model = lane_model_from_definitions(definitions)
                if model is None:
                    self.warnings.append(
                        "lane budget checked per lane domain only (the cluster does not list the active bundle's "
                        "queries); give bundle_src or bundle_content for a per-metric projection")
                return model
            loaded = _definitions.json_ready(_definitions.load_bundle(src=bundle_src, content=bundle_content))
            if active and _definitions.expected_bundle_id(loaded) != active:
                self.warnings.append("the bundle given is not the active bundle %s; lanes were projected for the "
                                     "bundle given" % active)
            return lane_model_from_report(loaded, _definitions.validate_bundle(self.client, loaded))
        except _definitions.ControlPlaneError as err:
            raise ConfigManagerError("cannot check the lane budget: %s" % err.message) from None


def _check_name(name):
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}", name):
        raise ConfigManagerError("override name %r must be 1-128 characters: letters, digits and _ . : @ / -" % (name,))


def _summary(name, entry, now):
    entry = entry if isinstance(entry, dict) else {}
    remaining = entry_expiry(entry) - now
    return {"name": name, "who": entry.get("who"), "expires_at": entry.get("expires_at"),
            "remaining_s": round(max(remaining, 0.0), 3), "expired": remaining <= 0,
            "keys": sorted(entry.get("after", {}))}


def _changed_leaf_keys(plan):
    keys = set()
    for key in set(plan.entry_before.get("after", {}) if plan.entry_before else {}) | \
            set(plan.entry_after.get("after", {}) if plan.entry_after else {}):
        if get_path(plan.config, key) != get_path(plan.new_config, key):
            keys.add(key)
    if plan.changed:
        keys.add("annotations.%s" % LEDGER_KEY)
    return keys
