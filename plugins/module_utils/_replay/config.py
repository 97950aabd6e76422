# -*- coding: utf-8 -*-
# Internal to ceptra.backfill (not a public API): replay options, their defaults and checks.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replay engine's options (one place for every default) and its error base.

:class:`ReplayConfig` holds every option of a run with its default; the modules' argument
specs (``engine.module_argument_spec``), the command line and the throttle take their
defaults from :data:`DEFAULTS`. ``ReplayError`` is the base of every error the replay
engine raises (bad options, an unreadable source or cursor store, a fan-out mismatch...).
"""

from __future__ import annotations

import dataclasses
import math
from urllib.parse import urlsplit

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

BAD_ROW_POLICIES = ("stop", "dead_letter")
# The smallest max_event_bytes a run accepts (the source's own size check uses the same).
MIN_EVENT_BYTES = 1024


class ReplayError(CeptraError):
    """An error of the replay engine; the message says what to fix.

    A module reports it as ``<module name>: <message>`` (the message names the piece: the
    historic source, the cursor store, the worker group...).
    """

    context = "{module}: "


class ReplayConfigError(ReplayError, ValueError):
    """Bad replay options; the message says what to fix."""


@dataclasses.dataclass
class ReplayConfig:  # pylint: disable=too-many-instance-attributes
    """Every option of a replay run, with its default (docs/replay.md explains them)."""

    run_id: str = None                      # name of the run: cursors, replay sessions and audit records
    part_ids: list = None                   # partitions to replay; None = every partition of the source
    batch_events: int = 2000                # rows read from the source per page
    max_window: int = 1024                  # most events in one append-stream request
    use_replay_sessions: bool = True        # replay_session/replay_seq dedup (else event_id only)
    on_bad_row: str = "stop"                # stop | dead_letter
    dead_letter_path: str = None
    max_parallel_partitions: int = 8        # sender threads of this worker
    throttle: bool = True                   # follow apply/replication lag
    apply_lag_threshold_ms: float = 200.0   # the operations guide's guardrails
    replication_lag_threshold_ms: float = 250.0
    critical_factor: float = 5.0            # abort above this multiple of a threshold
    setpoint_ratio: float = 0.4             # the throttle steers the lag to this share of the threshold
    initial_rate: float = 500.0             # events/s per partition before the throttle adapts
    max_rate: float = None
    pause_file: str = None
    metrics_textfile: str = None
    pushgateway_url: str = None
    audit_file: str = None                  # local JSON Lines audit, one record per acked batch
    operator: str = None                    # identity in audit records (default: _audit.operator_identity)
    durability_wait_s: float = 300.0        # how long a fenced partition waits before it stops
    estimated_rate: float = 2000.0          # events/s per partition for plan estimates
    retry_stopped: bool = False
    cp_audit: bool = True                   # summary records in the control-plane audit log
    max_event_bytes: int = 1048576          # a larger event is a bad row (the source checks it too)
    progress_interval_s: float = 1.0
    commit_interval_s: float = 0.25         # cursor commits at most this often per partition


DEFAULTS = ReplayConfig()
OPTION_NAMES = tuple(field.name for field in dataclasses.fields(ReplayConfig))


def build_config(options):
    """A checked :class:`ReplayConfig` from ``options`` (a mapping, None meaning the default, or a ReplayConfig).

    Raises ReplayConfigError naming the option and what to give instead.
    """
    if isinstance(options, ReplayConfig):
        options = dataclasses.asdict(options)
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ReplayConfigError("unknown replay option(s): %s" % ", ".join(unknown))
    cfg = ReplayConfig(**{key: value for key, value in options.items() if value is not None})
    if not cfg.run_id or not isinstance(cfg.run_id, str) or "/" in cfg.run_id:
        raise ReplayConfigError("run_id is required: a name for this replay without '/', e.g. incident-4711")
    if cfg.on_bad_row not in BAD_ROW_POLICIES:
        raise ReplayConfigError("on_bad_row must be one of %s, got %r" % (", ".join(BAD_ROW_POLICIES), cfg.on_bad_row))
    if cfg.on_bad_row == "dead_letter" and not cfg.dead_letter_path:
        raise ReplayConfigError("on_bad_row: dead_letter needs dead_letter_path (a JSONL file to write bad rows to)")
    for key in ("batch_events", "max_window", "max_parallel_partitions"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise ReplayConfigError("%s must be a whole number >= 1, got %r" % (key, value))
    for key in ("apply_lag_threshold_ms", "replication_lag_threshold_ms", "initial_rate", "estimated_rate",
                "max_rate"):
        value = getattr(cfg, key)
        if not (key == "max_rate" and value is None) and not _finite(value, above=0):
            raise ReplayConfigError("%s must be a positive number, got %r" % (key, value))
    # critical_factor and setpoint_ratio: throttle.ThrottleSettings checks them
    if not _finite(cfg.durability_wait_s, above=-math.inf) or cfg.durability_wait_s < 0:
        raise ReplayConfigError("durability_wait_s must be 0 or more seconds, got %r" % (cfg.durability_wait_s,))
    if isinstance(cfg.max_event_bytes, bool) or not isinstance(cfg.max_event_bytes, int) \
            or cfg.max_event_bytes < MIN_EVENT_BYTES:
        raise ReplayConfigError("max_event_bytes must be a whole number of at least %d, got %r"
                                % (MIN_EVENT_BYTES, cfg.max_event_bytes))
    if cfg.pushgateway_url is not None and not _is_http_url(cfg.pushgateway_url):
        raise ReplayConfigError("pushgateway_url must be the Pushgateway's http:// or https:// base URL with a host, "
                                "e.g. http://pushgateway.example:9091")
    if cfg.part_ids is not None:
        if not cfg.part_ids:
            raise ReplayConfigError("partitions is an empty list; name the partitions to replay, or leave it out to "
                                    "replay every partition of the source")
        cfg.part_ids = [str(p) for p in cfg.part_ids]
    return cfg


def _finite(value, above):
    """True for a real number (not a bool, NaN or infinity) greater than ``above``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > above


def _is_http_url(url):
    try:
        parts = urlsplit(str(url))
        parts.port  # pylint: disable=pointless-statement  # raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
