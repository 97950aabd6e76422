# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the route table, the only place that knows URL paths.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal route table of ceptra.backfill (not a public API).

Every HTTP path the collection uses is named here. Deployments that serve the contract
under other paths (a gateway prefix, the reference implementation's ``/admin`` surface)
override single templates with the ``routes`` option or the ``CEPTRA_ROUTES`` environment
variable (a JSON object ``{"<route name>": "<path template>"}``).
"""

from __future__ import annotations

import json
import re
import string
from urllib.parse import quote

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

# name -> path template; {placeholders} are filled from request params and URL-quoted.
DEFAULT_ROUTES = {
    "healthz": "/healthz",
    "readyz": "/readyz",
    "metrics": "/metrics",
    "config": "/v1/config",
    "config_rollback": "/v1/config/rollback",
    "definitions": "/v1/definitions",
    "definitions_validate": "/v1/definitions/validate",
    "activate": "/v1/activate",
    "activation": "/v1/activate/{barrier_id}",
    "replay_jobs": "/v1/replay",
    "replay_job": "/v1/replay/{job_id}",
    "state": "/v1/state",
    "audit": "/v1/audit",
    "append": "/append",
    "append_stream": "/v1/partitions/{part_id}/append-stream",
    "test_metrics_snapshot": "/v1/test/metrics-snapshot",
    "test_faults": "/v1/test/faults",
    "test_outage": "/v1/test/outage",
    "test_wipe": "/v1/test/wipe",
    "test_compact": "/v1/test/compact",
    "test_checkpoint": "/v1/test/checkpoint",
    "test_derived_events": "/v1/test/derived-events",
    "test_sink": "/v1/test/sink",
}

_FORMATTER = string.Formatter()


class RouteError(CeptraError, ValueError):
    """A route name, override or parameter the table cannot use (message says what to fix)."""


def placeholders(template: str) -> set:
    """Return the ``{name}`` placeholders of a path template."""
    names = set()
    try:
        for _literal, field, _spec, _conv in _FORMATTER.parse(template):
            if field is not None:
                names.add(field)
    except ValueError as exc:
        raise RouteError("path template %r is malformed: %s" % (template, exc)) from None
    return names


def parse_routes_env(text: str | None) -> dict:
    """Parse ``CEPTRA_ROUTES`` (a JSON object) into a dict; empty or unset gives ``{}``."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RouteError("CEPTRA_ROUTES must be a JSON object of route name -> path template: %s" % exc) from None
    if not isinstance(value, dict):
        raise RouteError("CEPTRA_ROUTES must be a JSON object of route name -> path template")
    return value


class RouteTable:
    """Route name -> path template, with validated overrides."""

    def __init__(self, overrides: dict | None = None):
        self.templates = dict(DEFAULT_ROUTES)
        for name, template in (overrides or {}).items():
            self._check_override(name, template)
            self.templates[name] = template

    @staticmethod
    def _check_override(name, template):
        if name not in DEFAULT_ROUTES:
            raise RouteError(
                "unknown route %r in routes; known routes: %s" % (name, ", ".join(sorted(DEFAULT_ROUTES)))
            )
        if not isinstance(template, str) or not template.startswith("/"):
            raise RouteError("route %r must map to a path template starting with '/', got %r" % (name, template))
        wanted = placeholders(DEFAULT_ROUTES[name])
        got = placeholders(template)
        if got != wanted:
            raise RouteError(
                "route %r override %r must use exactly the placeholders %s (it uses %s)"
                % (name, template, sorted(wanted) or "none", sorted(got) or "none")
            )
        if re.search(r"\s", template):
            raise RouteError("route %r override %r contains whitespace" % (name, template))

    def path(self, name: str, params: dict | None = None) -> str:
        """Return the path of route ``name`` with its placeholders filled from ``params``."""
        try:
            template = self.templates[name]
        except KeyError:
            raise RouteError("unknown route %r; known routes: %s" % (name, ", ".join(sorted(self.templates)))) from None
        needed = placeholders(template)
        params = params or {}
        missing = needed - set(params)
        if missing:
            raise RouteError("route %r needs the parameter(s) %s" % (name, ", ".join(sorted(missing))))
        if not needed:
            return template
        values = {key: quote(str(params[key]), safe="") for key in needed}
        return template.format(**values)
