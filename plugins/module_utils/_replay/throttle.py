# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay throttle.

A per-partition rate controller driven by the cluster's own guardrail signals
(``apply_lag_ms`` and ``replication_lag_ms``), a token bucket that turns the rate into
waits, a pause flag (file or cursor-store flag) shared by all workers of a run, and a
critical threshold that aborts the run.

The controller is pure (no I/O, clock passed in), so it is unit-tested against a
simulated apply-capacity plant; the poller that feeds it lives in ``LagPoller``.
"""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.ceptra.backfill.plugins.module_utils import _readiness
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import DEFAULTS, ReplayConfigError, ReplayError

# Events per request = this many seconds of the current rate: small bursts keep the
# apply-lag saw-tooth (and so its noise in the controller) small.
BATCH_SECONDS = 0.025


class ThrottleAbort(ReplayError):
    """Raised when a partition's lag stays above the critical threshold: the run must stop."""


class ThrottleSettings(object):
    """Tuning of the controller. Defaults follow the operations guide (200 ms / 250 ms)."""

    def __init__(self, apply_lag_threshold_ms=DEFAULTS.apply_lag_threshold_ms,
                 replication_lag_threshold_ms=DEFAULTS.replication_lag_threshold_ms,
                 setpoint_ratio=DEFAULTS.setpoint_ratio, critical_factor=DEFAULTS.critical_factor, critical_polls=10,
                 initial_rate=DEFAULTS.initial_rate, min_rate=20.0, max_rate=DEFAULTS.max_rate, poll_interval_s=0.1,
                 increase_factor=1.25, gain=0.3, slope_gain=1.0,
                 smoothing=1.0, slope_baseline_s=0.2, pause_cut=0.75, min_factor=0.5):
        if apply_lag_threshold_ms <= 0 or replication_lag_threshold_ms <= 0:
            raise ReplayConfigError("lag thresholds must be positive (milliseconds)")
        if not 0.05 <= setpoint_ratio < 1.0:
            raise ReplayConfigError("setpoint_ratio must be in [0.05, 1.0)")
        if critical_factor <= 1.0:
            raise ReplayConfigError("critical_factor must be above 1 (a multiple of the threshold)")
        if min_rate <= 0 or initial_rate <= 0:
            raise ReplayConfigError("rates must be positive (events per second)")
        if max_rate is not None and max_rate < min_rate:
            raise ReplayConfigError("max_rate must be at least min_rate")
        self.apply_lag_threshold_ms = float(apply_lag_threshold_ms)
        self.replication_lag_threshold_ms = float(replication_lag_threshold_ms)
        self.setpoint_ratio = float(setpoint_ratio)
        self.critical_factor = float(critical_factor)
        self.critical_polls = int(critical_polls)
        self.initial_rate = float(initial_rate)
        self.min_rate = float(min_rate)
        self.max_rate = float(max_rate) if max_rate else None
        self.poll_interval_s = float(poll_interval_s)
        self.increase_factor = float(increase_factor)
        self.gain = float(gain)
        self.slope_gain = float(slope_gain)
        self.smoothing = float(smoothing)
        self.pause_cut = float(pause_cut)
        self.min_factor = float(min_factor)
        self.slope_baseline_s = float(slope_baseline_s)


class RateController(object):
    """Rate controller for one partition.

    The signal is the worse of the two lags, each divided by its threshold (1.0 = at the
    threshold). Apply lag behaves like an integrator of (send rate - apply capacity):
    while a backlog exists, d(lag)/dt = rate/capacity - 1. Each poll multiplies the rate by

        1 + gain * (setpoint - signal) - slope_gain * d(lag)/dt

    (clamped to [0.5, increase_factor]): the slope term brings the rate to the capacity
    in about one poll, the level term steers the lag to the setpoint (40 % of the
    threshold by default) and probes upwards while there is no backlog at all.
    Steering to a positive lag setpoint (instead of "lag ~ 0") is what lets the run use
    nearly all the apply capacity: at steady state the send rate equals the capacity
    with a small, bounded backlog.

    Above the threshold the partition pauses (its rate is multiplied by ``pause_cut``)
    until the lag is back under it; above ``critical_factor`` x threshold for ``critical_polls`` consecutive
    polls the run aborts.
    """

    def __init__(self, settings):
        self.settings = settings
        self.rate = settings.initial_rate
        self.paused = False
        self.signal = 0.0
        self.apply_lag_ms = None
        self.replication_lag_ms = None
        self.critical_count = 0
        self.last_update = None
        self.smoothed = None
        self._history = []
        self._sent = 0
        self._sent_since = None

    def note_sent(self, events):
        """Count events the worker actually sent (for the anti wind-up cap)."""
        self._sent += events

    def _reference_ms(self, apply_lag_ms, replication_lag_ms):
        """Threshold (ms) of the signal that currently dominates."""
        s = self.settings
        a = (apply_lag_ms or 0.0) / s.apply_lag_threshold_ms
        r = (replication_lag_ms or 0.0) / s.replication_lag_threshold_ms
        return s.apply_lag_threshold_ms if a >= r else s.replication_lag_threshold_ms

    def clamp(self, rate):
        """``rate`` within [min_rate, max_rate]."""
        rate = max(self.settings.min_rate, rate)
        if self.settings.max_rate is not None:
            rate = min(self.settings.max_rate, rate)
        return rate

    def update(self, apply_lag_ms, replication_lag_ms, now):
        """Feed one observation; returns the new rate. Raises ThrottleAbort when critical."""
        s = self.settings
        self.apply_lag_ms = apply_lag_ms
        self.replication_lag_ms = replication_lag_ms
        self.last_update = now
        ratios = []
        if apply_lag_ms is not None:
            ratios.append(float(apply_lag_ms) / s.apply_lag_threshold_ms)
        if replication_lag_ms is not None:
            ratios.append(float(replication_lag_ms) / s.replication_lag_threshold_ms)
        signal = max(ratios) if ratios else 0.0
        self.signal = signal
        if signal >= s.critical_factor:
            self.critical_count += 1
            if self.critical_count >= s.critical_polls:
                raise ThrottleAbort(
                    "lag stayed above %.0fx the threshold for %d polls "
                    "(apply_lag_ms=%s, replication_lag_ms=%s)"
                    % (s.critical_factor, self.critical_count, apply_lag_ms, replication_lag_ms))
        else:
            self.critical_count = 0
        if signal > 1.0:
            # Over the guardrail: stop sending until it recovers, and come back slower.
            self.paused = True
            self.rate = self.clamp(self.rate * s.pause_cut)
            self._history = []
            self._sent, self._sent_since = 0, now
            return self.rate
        self.paused = False
        # The lag read at one instant carries the saw-tooth of batching: smooth it, and take
        # the slope over a baseline of about a second.
        if self.smoothed is None:
            self.smoothed = signal
        else:
            self.smoothed = s.smoothing * signal + (1.0 - s.smoothing) * self.smoothed
        level = self.smoothed
        self._history.append((now, level))
        while len(self._history) > 2 and now - self._history[1][0] >= s.slope_baseline_s:
            self._history.pop(0)
        factor = 1.0 + s.gain * (s.setpoint_ratio - level)
        base_at, base_level = self._history[0]
        if now - base_at >= s.slope_baseline_s * 0.5 and (base_level > 0.02 or level > 0.02):
            # Slope term: while a backlog exists, d(lag)/dt = rate/capacity - 1, so the
            # slope tells how far above (or below) the apply capacity we are sending.
            ref_ms = self._reference_ms(apply_lag_ms, replication_lag_ms)
            slope = (level - base_level) * ref_ms / 1000.0 / (now - base_at)
            factor -= s.slope_gain * slope
        factor = min(s.increase_factor, max(s.min_factor, factor))
        target = self.rate * factor
        if factor > 1.0 and self._sent_since is not None and now > self._sent_since:
            # Anti wind-up: never raise the target far above what the worker actually sent
            # (a worker held up by its source would otherwise come back with a burst).
            actual = self._sent / (now - self._sent_since)
            target = min(target, max(self.rate, actual * 1.5, s.min_rate))
        self._sent, self._sent_since = 0, now
        self.rate = self.clamp(target)
        return self.rate


class TokenBucket(object):
    """Turns a rate into waits. Burst is kept small (50 ms of the rate) so a
    rate cut takes effect quickly."""

    def __init__(self, rate, burst_s=0.05):
        self.rate = float(rate)
        self.burst_s = burst_s
        self.tokens = 0.0
        self.last = None

    def wait_time(self, n, now):
        """Seconds to wait before ``n`` events may go; consumes them when 0."""
        if self.last is None:
            self.last = now
            self.tokens = self.rate * self.burst_s
        else:
            elapsed = max(0.0, now - self.last)
            self.last = now
            self.tokens = min(max(self.rate * self.burst_s, float(n)), self.tokens + elapsed * self.rate)
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class PauseFlag(object):
    """Run-wide pause: a file whose existence pauses every worker, or the cursor
    store's pause flag. Checks are cached for ``check_interval_s`` to keep them cheap."""

    def __init__(self, pause_file=None, cursor_store=None, run_id=None, check_interval_s=0.5,
                 clock=time.monotonic):
        self.pause_file = pause_file
        self.cursor_store = cursor_store
        self.run_id = run_id
        self.check_interval_s = check_interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cached = False
        self._checked_at = None
        self.reason = ""

    def is_paused(self):
        """True while the pause file exists or the store flag is set."""
        now = self.clock()
        with self._lock:
            if self._checked_at is not None and now - self._checked_at < self.check_interval_s:
                return self._cached
            paused = False
            reason = ""
            if self.pause_file and os.path.exists(self.pause_file):
                paused, reason = True, "pause file %s exists" % self.pause_file
            elif self.cursor_store is not None and self.run_id is not None:
                try:
                    if self.cursor_store.is_paused(self.run_id):
                        paused, reason = True, "run %s paused in the cursor store" % self.run_id
                except Exception:  # a flaky store must not stop the run; keep the last answer
                    paused, reason = self._cached, self.reason
            self._cached, self.reason, self._checked_at = paused, reason, now
            return paused


class Throttle(object):
    """All partitions' controllers plus their token buckets; thread-safe.

    Workers call ``wait_for(part_id, n)`` before each batch (returns seconds to sleep, or
    a positive number while paused); the poller calls ``observe`` with fresh lags.
    """

    def __init__(self, settings=None, clock=time.monotonic):
        self.settings = settings or ThrottleSettings()
        self.clock = clock
        self._lock = threading.Lock()
        self._controllers = {}
        self._buckets = {}
        self.abort_reason = None

    def _get(self, part_id):
        ctl = self._controllers.get(part_id)
        if ctl is None:
            ctl = self._controllers[part_id] = RateController(self.settings)
            self._buckets[part_id] = TokenBucket(ctl.rate)
        return ctl

    def resume(self, part_id, rate):
        """Start a partition at ``rate`` (what an earlier time slice of the run had reached, from
        its cursor) instead of ``initial_rate``; clamped to [min_rate, max_rate]. The controller
        still adapts from there on the first poll (and backs off on lag as ever)."""
        with self._lock:
            ctl = self._get(part_id)
            ctl.rate = ctl.clamp(float(rate))
            self._buckets[part_id].rate = ctl.rate

    def observe(self, part_id, apply_lag_ms, replication_lag_ms):
        """Feed a lag observation for one partition; records an abort when critical."""
        with self._lock:
            ctl = self._get(part_id)
            try:
                rate = ctl.update(apply_lag_ms, replication_lag_ms, self.clock())
            except ThrottleAbort as exc:
                self.abort_reason = "partition %s: %s" % (part_id, exc)
                ctl.paused = True
                return
            self._buckets[part_id].rate = rate

    def wait_for(self, part_id, n):
        """Seconds the worker should sleep before sending ``n`` events (0 = go now)."""
        with self._lock:
            ctl = self._get(part_id)
            if ctl.paused:
                return self.settings.poll_interval_s
            wait = self._buckets[part_id].wait_time(n, self.clock())
            if wait == 0:
                ctl.note_sent(n)
            return wait

    def rate(self, part_id):
        """Current target rate (events/s) of a partition."""
        with self._lock:
            return self._get(part_id).rate

    def suggested_batch(self, part_id, window):
        """Events per request: about 25 ms (BATCH_SECONDS) of the current rate, at most the window."""
        with self._lock:
            rate = self._get(part_id).rate
        return max(1, min(int(window), int(rate * BATCH_SECONDS) or 1))

    def lags(self, part_id):
        """Last observed (apply_lag_ms, replication_lag_ms) of a partition."""
        with self._lock:
            ctl = self._get(part_id)
            return ctl.apply_lag_ms, ctl.replication_lag_ms

    def is_partition_paused(self, part_id):
        with self._lock:
            return self._get(part_id).paused


def read_partition_lags(client):
    """Read per-partition lags from the cluster: {part_id: (apply_lag_ms, replication_lag_ms)}.

    Goes through the shared tolerant readiness reader (``_readiness.partition_lags``), which
    knows every /readyz variant, legacy ``_seconds`` fields and 503 readiness answers.
    """
    return _readiness.partition_lags(client)


class LagPoller(object):
    """One background thread per run polling lags for all partitions (every
    ``poll_interval_s``, 100 ms by default), feeding the throttle. Poll errors are counted, not fatal: the controller keeps its
    last rate (it only increases on fresh observations)."""

    def __init__(self, throttle, fetch, part_ids, interval_s=None):
        self.throttle = throttle
        self.fetch = fetch
        self.part_ids = [str(p) for p in part_ids]
        self.interval_s = interval_s if interval_s is not None else throttle.settings.poll_interval_s
        self.errors = 0
        self.last_error = None
        self.polls = 0
        self._stop = threading.Event()
        self._thread = None

    def poll_once(self):
        """Fetch and feed one observation for every partition of the run."""
        try:
            lags = self.fetch()
        except Exception as exc:  # network hiccup: keep going on the last known rates
            self.errors += 1
            self.last_error = str(exc)
            return
        self.polls += 1
        for part_id in self.part_ids:
            apply_lag, repl_lag = lags.get(part_id, (None, None))
            self.throttle.observe(part_id, apply_lag, repl_lag)

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="replay-lag-poller", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
