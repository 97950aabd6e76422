# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: CeptraModule, the AnsibleModule every module is built on.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal module helper of ceptra.backfill (not a public API), the role community.hashi_vault's
``HashiVaultModule`` and amazon.aws's ``AnsibleAWSModule`` play there.

A module's ``main()`` holds only its own logic::

    module = CeptraModule(argument_spec={"partitions": {"type": "list", "elements": "str"}})
    with module.reporting("read the cluster state"):
        body = module.client.get_json("state")
    module.exit_json(changed=False, ...)

- the shared connection options (doc fragment ``ceptra.backfill.connection``) are added to
  the argument spec, ``client_cert``/``client_key`` to ``required_together``, and check mode
  is supported unless the module says otherwise;
- ``module.client`` is the shared client, built on first use from those options;
- inside ``reporting(doing)`` every CeptraError ends the task through ``fail_json`` (see
  :meth:`CeptraModule.fail_from`); leaving the block closes the client.
"""

from __future__ import annotations

import contextlib

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_record import credentials_in
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CONNECTION_DEFAULTS, CeptraClient
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

# Option pairs that must be given together (mutual TLS needs both halves).
CONNECTION_REQUIRED_TOGETHER = (("client_cert", "client_key"),)


def connection_argument_spec() -> dict:
    """Return a fresh argument spec of the shared connection options (doc fragment ``ceptra.backfill.connection``)."""
    return {
        "url": {"type": "str", "required": True, "fallback": (env_fallback, ["CEPTRA_URL"])},
        "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["CEPTRA_TOKEN"])},
        "client_cert": {"type": "path", "fallback": (env_fallback, ["CEPTRA_CLIENT_CERT"])},
        # A path, not a secret; the client never reads the key file itself (ssl does).
        "client_key": {"type": "path", "no_log": False, "fallback": (env_fallback, ["CEPTRA_CLIENT_KEY"])},
        "ca_path": {"type": "path", "fallback": (env_fallback, ["CEPTRA_CA_PATH"])},
        "validate_certs": {"type": "bool", "default": CONNECTION_DEFAULTS["validate_certs"],
                           "fallback": (env_fallback, ["CEPTRA_VALIDATE_CERTS"])},
        "timeout": {"type": "int", "default": CONNECTION_DEFAULTS["timeout"], "fallback": (env_fallback, ["CEPTRA_TIMEOUT"])},
        "retries": {"type": "int", "default": CONNECTION_DEFAULTS["retries"], "fallback": (env_fallback, ["CEPTRA_RETRIES"])},
        "routes": {"type": "dict", "fallback": (env_fallback, ["CEPTRA_ROUTES"])},
    }


def connection_required_together() -> list:
    """Return a fresh copy of the option pairs that must be given together."""
    return [list(pair) for pair in CONNECTION_REQUIRED_TOGETHER]


class CeptraModule(AnsibleModule):
    """An AnsibleModule with the shared connection options, one client and one way to fail.

    Takes AnsibleModule's keywords; ``argument_spec`` holds the module's own options and
    ``required_together`` its own pairs (the connection options and pairs are added).
    """

    def __init__(self, argument_spec=None, required_together=None, supports_check_mode=True, **kwargs):
        spec = connection_argument_spec()
        spec.update(argument_spec or {})
        together = connection_required_together() + [list(pair) for pair in required_together or ()]
        super().__init__(argument_spec=spec, required_together=together, supports_check_mode=supports_check_mode,
                         **kwargs)
        self._client = None
        self.no_log_credentials(self.params.get("url"))

    def no_log_credentials(self, *values):
        """Register the credentials inside ``values`` (a DSN's password, a URL's userinfo) as no-log
        values: Ansible masks them in everything the module returns (messages, warnings, the
        invocation shown at -vvv)."""
        for value in values:
            self.no_log_values.update(credentials_in(value))

    @property
    def client(self):
        """The shared client, built on first use; bad connection options fail the task."""
        if self._client is None:
            self._client = self.client_for(self.params, "set up the connection to the CEPtra cluster")
        return self._client

    def client_for(self, options, doing):
        """A client for another set of connection options (e.g. a second cluster); the caller closes it."""
        try:
            if options is self.params:
                return CeptraClient.from_module(self)
            return CeptraClient.from_options(options)
        except CeptraError as err:
            self.fail_from(err, doing)
        return None  # not reached: fail_from exits

    def close_client(self):
        """Close the shared client's connections (a later ``client`` builds a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextlib.contextmanager
    def reporting(self, doing, warnings=()):
        """Run the block; a CeptraError raised in it fails the task (``doing`` says what the
        module was doing, e.g. "read the cluster state"), after warning ``warnings``.
        The shared client is closed when the block ends, however it ends."""
        try:
            yield self
        except CeptraError as err:
            self.fail_from(err, doing, warnings=warnings)
        finally:
            self.close_client()

    def fail_from(self, err, doing, warnings=(), **extra):
        """Fail the task with ``err``: its message after its context (e.g. "Could not <doing>: "),
        its details (and, for a failed call, status, route, error body, attempts) as result
        keys; its ``warnings`` detail and then ``warnings`` become module warnings; ``extra``
        adds result keys."""
        for warning in list(err.details.get("warnings") or ()) + list(warnings):
            self.warn(warning)
        result = err.module_result(doing, self._name)
        result.update(extra)
        self.close_client()
        self.fail_json(**result)
