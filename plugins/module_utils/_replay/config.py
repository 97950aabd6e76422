# -*- coding: utf-8 -*-
# Internal to ceptra.backfill (not a public API): replay options, their defaults and checks.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replay engine's errors and options.

``ReplayError`` is the base of every error the replay engine raises (bad options, an
unreadable source or cursor store, a fan-out mismatch, a refused run).
"""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError


class ReplayError(CeptraError):
    """An error of the replay engine; the message says what to fix.

    A module reports it as ``<module name>: <message>`` (the message names the piece: the
    historic source, the cursor store, the worker group...).
    """

    context = "{module}: "


class ReplayConfigError(ReplayError, ValueError):
    """Bad replay options; the message says what to fix."""
