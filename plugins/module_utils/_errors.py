# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: CeptraError, the base of every error the collection raises.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal error base of ceptra.backfill (not a public API).

Every error the collection raises on purpose is a :class:`CeptraError`, so a caller (a
module through ``_module.CeptraModule``, the replay command line, a test) catches one class.
The families below it live with the code that raises them: ``_routes.RouteError``,
``_definitions.ControlPlaneError``, ``_config_ledger.ConfigManagerError``,
``_snapshot.SnapshotError`` and ``_replay.config.ReplayError`` (the replay engine's errors).
"""

from __future__ import annotations


class CeptraError(Exception):
    """A failure with a readable ``message`` (what went wrong and what to do).

    ``details`` are extra keys for the module result (violations, the barrier, the shadow
    summary...); a ``warnings`` detail becomes module warnings. An error that comes from a
    call to the cluster (raised by the shared client) also says ``status`` (the HTTP status,
    None when the call did not get an answer), ``route``, ``method``, ``path``, ``body`` (the
    JSON error body), ``attempts`` (how often the call was sent) and ``hint`` (what to do);
    for every other error these are None, 0 or empty.
    """

    #: What a module writes before ``message``: ``{doing}`` is what the module was doing
    #: ("read the cluster state"), ``{module}`` its name. A failed call's message names the
    #: call ("GET /v1/state failed with 401: ..."), not the step, so the default names the
    #: step; a family whose messages already name the step sets "".
    context = "Could not {doing}: "

    def __init__(self, message, status=None, body=None, route=None, method=None, path=None, attempts=0, hint="",
                 **details):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.route = route
        self.method = method
        self.path = path
        self.attempts = attempts
        self.hint = hint
        self.details = details

    def __str__(self):
        return self.message

    def module_result(self, doing="", module_name=""):
        """The keys ``fail_json`` reports: ``msg`` (context + message), the details, and for a
        failed call ``status``, ``route``, ``error_body`` and ``attempts`` when known."""
        result = {key: value for key, value in self.details.items() if key != "warnings"}
        result["msg"] = self.context.format(doing=doing, module=module_name) + self.message
        if self.status is not None:
            result["status"] = self.status
        if self.route:
            result["route"] = self.route
        if self.body:
            result["error_body"] = self.body
        if self.attempts:
            result["attempts"] = self.attempts
        return result
