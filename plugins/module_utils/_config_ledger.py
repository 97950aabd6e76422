# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the override ledger format (entries, paths, absent markers, validity windows).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the override ledger format; see docs/config-manager.md.

The config manager (``_config_manager``) keeps each named override's ledger entry in
``annotations["ceptra.backfill/overrides"][name]``. This file holds what an entry is made of
and nothing that talks to the cluster: dotted-path flatten/get/set/delete of config leaves,
the ``ABSENT`` marker for "key was absent", reading and storing the ledger, checking an
entry's shape, and validity windows (``valid_for`` / ``expires_at``, timestamps).
``ConfigManagerError`` is defined here because every config_* file raises it and this is
the file the others import from.
"""

from __future__ import annotations

import copy
import datetime
import re

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

LEDGER_KEY = "ceptra.backfill/overrides"
# before/after maps hold leaf values (never objects), so this object means "key was absent".
ABSENT = {"__absent__": True}
_MISSING = object()


class ConfigManagerError(CeptraError):
    """A refusal or conflict with a readable ``message``; ``details`` go into the module result."""


# --------------------------------------------------------------------------- time

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# An override is temporary: its validity window ends at most this long after it starts
# (10 years, the longest duration the cluster's config knobs accept either).
MAX_VALIDITY_S = 10 * 365 * 86400
# Epoch seconds a timestamp can have (1970 up to the end of year 9999, what ISO 8601 writes).
_LAST_EPOCH_S = 253402300799


def parse_duration(text):
    """Seconds of a duration like ``90s``, ``2h``, ``1d``, ``1h30m``; ConfigManagerError otherwise."""
    raw = str(text).strip() if text is not None else ""
    compact = raw.replace(" ", "")
    if not compact or _DURATION_PART.sub("", compact) != "":
        raise ConfigManagerError(
            "valid_for=%r is not a duration; write a number with a unit s, m, h, d or w, e.g. 90s, 2h, 1d, 1h30m" % text)
    seconds = sum(int(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise ConfigManagerError("valid_for=%r must be longer than zero" % text)
    if seconds > MAX_VALIDITY_S:
        raise ConfigManagerError("valid_for=%r is longer than an override may stay valid (at most %dd, 10 years); give "
                                 "a shorter window and extend it when needed" % (text, MAX_VALIDITY_S // 86400))
    return seconds


def format_ts(epoch):
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-26T19:00:00.000Z``; ConfigManagerError for a
    time before 1970 or after year 9999."""
    try:
        stamp = datetime.datetime.fromtimestamp(_in_range(epoch), tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ConfigManagerError("the time %r cannot be written as ISO 8601 (1970 to 9999)" % (epoch,)) from None
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (stamp.microsecond // 1000)


def parse_ts(value, what="expires_at"):
    """Epoch seconds of an ISO 8601 time with a zone (or ``Z``), or of epoch seconds (number or numeric string)."""
    if isinstance(value, bool):
        raise ConfigManagerError("%s=%r is not a time" % (what, value))
    if isinstance(value, (int, float)) or re.fullmatch(r"\d+(\.\d+)?", str(value).strip()):
        try:
            return _in_range(float(value), what, value)
        except OverflowError:   # an int too large for a float
            return _in_range(float("inf"), what, value)
    text = str(value).strip()
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigManagerError(
            "%s=%r is not a time; give ISO 8601 with a zone (2026-11-26T21:00:00Z) or epoch seconds" % (what, value)
        ) from None
    if stamp.tzinfo is None:
        raise ConfigManagerError("%s=%r has no time zone; add Z or an offset such as +01:00" % (what, value))
    return _in_range(stamp.timestamp(), what, value)


def _in_range(epoch, what="time", given=None):
    """``epoch`` when it is a time between 1970 and the end of year 9999, else ConfigManagerError."""
    if not (isinstance(epoch, (int, float)) and 0 <= epoch <= _LAST_EPOCH_S):   # also NaN and infinities
        raise ConfigManagerError("%s=%r is not a time between 1970 and 9999; give ISO 8601 with a zone "
                                 "(2026-11-26T21:00:00Z) or epoch seconds" % (what, epoch if given is None else given))
    return epoch


class Window:
    """The requested validity window: exactly one of ``valid_for`` (relative) or ``expires_at`` (absolute)."""

    def __init__(self, valid_for=None, expires_at=None, extend=False):
        if (valid_for is None) == (expires_at is None):
            raise ConfigManagerError("give exactly one of valid_for (e.g. 2h) or expires_at (ISO 8601 or epoch seconds)")
        self.valid_for = str(valid_for).strip() if valid_for is not None else None
        self.seconds = parse_duration(valid_for) if valid_for is not None else None
        self.expires_at = parse_ts(expires_at) if expires_at is not None else None
        self.extend = bool(extend)

    def expiry(self, old, now):
        """Expiry epoch for this request given the existing ledger entry ``old`` (or None).

        A relative window counts from when the override was staged, so a rerun keeps the
        expiry; ``extend`` restarts it from now. An expired entry is staged anew.
        """
        if self.expires_at is not None:
            if self.expires_at > now + MAX_VALIDITY_S:
                latest = MAX_VALIDITY_S // 86400
                raise ConfigManagerError("expires_at=%s is more than %dd (10 years) from now; an override is "
                                         "temporary: give an earlier expiry" % (format_ts(self.expires_at), latest))
            return self.expires_at
        if self.extend or old is None or entry_expiry(old) <= now:
            return now + self.seconds
        return parse_ts(old.get("created_at"), "created_at") + self.seconds


def entry_expiry(entry):
    """Expiry epoch of a ledger entry (an unreadable expiry counts as already expired)."""
    try:
        return parse_ts(entry.get("expires_at"))
    except (ConfigManagerError, AttributeError):
        return 0.0


def checked_entry(name, entry):
    """``entry`` if it is a well-formed ledger entry, else ConfigManagerError saying what to fix."""
    problem = None
    if not isinstance(entry, dict):
        problem = "it is not an object"
    elif not isinstance(entry.get("before"), dict) or not isinstance(entry.get("after"), dict):
        problem = "before/after are not objects"
    elif set(entry["after"]) - set(entry["before"]):
        problem = "keys %s have no before-value" % ", ".join(sorted(set(entry["after"]) - set(entry["before"])))
    if problem:
        raise ConfigManagerError("ledger entry %s in annotations[%s] is malformed (%s); nothing was changed. Repair or "
                                 "remove it by hand with a PATCH of /v1/config" % (name, LEDGER_KEY, problem))
    return entry


# --------------------------------------------------------------------------- paths and leaves


def flatten_settings(settings, prefix=()):
    """``{dotted_path: value}`` of every leaf (non-object value; ``None`` deletes) of ``settings``."""
    if not isinstance(settings, dict):
        raise ConfigManagerError("settings must be a mapping of config keys, got %s" % type(settings).__name__)
    leaves = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not key or "." in key:
            raise ConfigManagerError("settings key %r under %r must be a non-empty name without dots"
                                     % (key, ".".join(prefix) or "(top level)"))
        path = prefix + (key,)
        if isinstance(value, dict):
            if not value:
                raise ConfigManagerError("settings.%s is an empty mapping; name the keys to change" % ".".join(path))
            leaves.update(flatten_settings(value, path))
        else:
            leaves[".".join(path)] = value
    if not prefix and not leaves:
        raise ConfigManagerError("settings is empty; give at least one config key to override")
    return leaves


def get_path(config, dotted):
    """Value at a dotted path, or ``_MISSING``."""
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def set_path(config, dotted, value):
    """Set a leaf, creating objects on the way; return the dotted paths of objects it created."""
    keys = dotted.split(".")
    node, created = config, []
    for depth, key in enumerate(keys[:-1]):
        if key not in node:
            node[key] = {}
            created.append(".".join(keys[:depth + 1]))
        elif not isinstance(node[key], dict):
            raise ConfigManagerError("cannot set %s: %s is not an object in the current config"
                                     % (dotted, ".".join(keys[:depth + 1])))
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)
    return created


def delete_path(config, dotted):
    """Remove a leaf if present."""
    keys = dotted.split(".")
    parent = get_path(config, ".".join(keys[:-1])) if len(keys) > 1 else config
    if isinstance(parent, dict):
        parent.pop(keys[-1], None)


def encode(value):
    """Ledger form of a value read from the config (``ABSENT`` for a missing key)."""
    return dict(ABSENT) if value is _MISSING or value is None else copy.deepcopy(value)


def storable(value):
    """``value`` with every ``None`` replaced by ``ABSENT``: a merge patch would delete nulls in the ledger."""
    if isinstance(value, dict):
        return {key: storable(item) for key, item in value.items()}
    return dict(ABSENT) if value is None else copy.deepcopy(value)


def write_leaf(config, dotted, ledger_value):
    """Write a ledger value at a dotted path (``ABSENT`` deletes); return the objects it created."""
    if ledger_value == ABSENT:
        delete_path(config, dotted)
        return []
    return set_path(config, dotted, ledger_value)


def ledger_of(config):
    """The override ledger ``{name: entry}`` stored in the config (empty when there is none)."""
    annotations = config.get("annotations")
    ledger = annotations.get(LEDGER_KEY) if isinstance(annotations, dict) else None
    return ledger if isinstance(ledger, dict) else {}


def store_ledger(config, ledger):
    """Put ``ledger`` into the config's annotations (an empty ledger removes the annotation)."""
    annotations = config.setdefault("annotations", {})
    if not isinstance(annotations, dict):
        raise ConfigManagerError("config annotations is not an object; cannot keep the override ledger there")
    if ledger:
        annotations[LEDGER_KEY] = ledger
    else:
        annotations.pop(LEDGER_KEY, None)


def without_ledger(config):
    """A copy of the config without the override ledger (for readable diffs)."""
    clean = copy.deepcopy(config)
    if isinstance(clean.get("annotations"), dict):
        clean["annotations"].pop(LEDGER_KEY, None)
    return clean


def ledger_path(name):
    """Key under which a plan records that it touches the ledger entry ``name``."""
    # The entry name may contain dots, so it is compared directly rather than via a dotted path.
    return ("ledger", name)


def touched_value(config, key):
    """Value of a touched key (a dotted path or a ``ledger_path``) in ``config``, or ``_MISSING``."""
    if isinstance(key, tuple):
        return ledger_of(config).get(key[1], _MISSING)
    return get_path(config, key)
