# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the one wait loop (poll until a condition holds or time is up).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): :func:`poll_until`, used by every wait.

Activation barriers, WAL replay jobs, shadow warmup, readiness conditions and the replay's
durability fence all wait the same way: look, stop when the condition holds, otherwise
sleep ``interval`` (never past the deadline) and look again, until ``timeout`` seconds have
passed. Time comes from injected ``clock`` and ``sleep`` so the waits are tested without
waiting.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

_NOT_LOOKED = object()


class Poll(NamedTuple):
    """How a wait ended: ``done`` (the condition held), the last ``value`` looked at, the number
    of ``polls`` (looks made here) and the seconds ``waited``."""
    done: bool
    value: Any
    polls: int
    waited: float


def poll_until(look, timeout, interval, *, first=_NOT_LOOKED, stop=None, sleep=time.sleep, clock=time.monotonic):
    """Call ``look()`` until it returns ``(True, value)`` or ``timeout`` seconds have passed.

    ``look`` returns ``(done, value)``; it may raise to end the wait at once (a state the
    wait cannot get past). ``first``, when given, is a ``(done, value)`` the caller already
    has: it is judged before the first sleep instead of a first look. ``stop()`` returning
    true ends the wait early, as a timeout does. Returns a :class:`Poll`; the caller words
    the timeout (it knows what was awaited).
    """
    started = clock()
    deadline = started + timeout
    polls = 0
    if first is _NOT_LOOKED:
        done, value = look()
        polls = 1
    else:
        done, value = first
    while not done:
        now = clock()
        if now >= deadline or (stop is not None and stop()):
            return Poll(False, value, polls, now - started)
        sleep(min(interval, deadline - now))
        done, value = look()
        polls += 1
    return Poll(True, value, polls, clock() - started)
