# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: shared module helpers (connection options, client, errors).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal module helpers of ceptra.backfill (not a public API).

Every module builds its argument spec from :func:`connection_argument_spec`, passes
:data:`CONNECTION_REQUIRED_TOGETHER` to AnsibleModule, gets its client from
:func:`client_from_module` and reports failures with :func:`fail_with_error`.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, CeptraError

# Pass as AnsibleModule(required_together=...) (add module-specific pairs to a copy).
CONNECTION_REQUIRED_TOGETHER = [["client_cert", "client_key"]]


def connection_argument_spec() -> dict:
    """Return a fresh argument spec of the shared connection options (doc fragment ``ceptra.backfill.connection``)."""
    return {
        "url": {"type": "str", "required": True, "fallback": (env_fallback, ["CEPTRA_URL"])},
        "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["CEPTRA_TOKEN"])},
        "client_cert": {"type": "path", "fallback": (env_fallback, ["CEPTRA_CLIENT_CERT"])},
        # A path, not a secret; the client never reads the key file itself (ssl does).
        "client_key": {"type": "path", "no_log": False, "fallback": (env_fallback, ["CEPTRA_CLIENT_KEY"])},
        "ca_path": {"type": "path", "fallback": (env_fallback, ["CEPTRA_CA_PATH"])},
        "validate_certs": {"type": "bool", "default": True, "fallback": (env_fallback, ["CEPTRA_VALIDATE_CERTS"])},
        "timeout": {"type": "int", "default": 30, "fallback": (env_fallback, ["CEPTRA_TIMEOUT"])},
        "retries": {"type": "int", "default": 5, "fallback": (env_fallback, ["CEPTRA_RETRIES"])},
        "routes": {"type": "dict", "fallback": (env_fallback, ["CEPTRA_ROUTES"])},
    }


def connection_required_together() -> list:
    """Return a fresh copy of the option pairs that must be given together."""
    return [list(pair) for pair in CONNECTION_REQUIRED_TOGETHER]


def client_from_module(module) -> CeptraClient:
    """Build the shared client from the module's connection options; fail the module on bad options."""
    try:
        return CeptraClient.from_module(module)
    except CeptraError as err:
        fail_with_error(module, err, "set up the connection to the CEPtra cluster")
    return None  # not reached: fail_json exits


def fail_with_error(module, err: CeptraError, doing: str, **extra):
    """Fail the module with a readable message naming what failed (``doing``) and what to do.

    ``doing`` is a verb phrase ("read the cluster state"); ``extra`` adds result keys.
    """
    result = dict(extra)
    result["msg"] = "Could not %s: %s" % (doing, err.message)
    if err.status is not None:
        result["status"] = err.status
    if err.route:
        result["route"] = err.route
    if err.body:
        result["error_body"] = err.body
    if err.attempts:
        result["attempts"] = err.attempts
    module.fail_json(**result)
