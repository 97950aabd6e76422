"""_common: the shared connection argument spec and the module error helper."""

from __future__ import annotations

import pytest

from ansible_collections.ceptra.backfill.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._common import (
    connection_argument_spec, connection_required_together, fail_with_error)

ENV = {"url": "CEPTRA_URL", "token": "CEPTRA_TOKEN", "client_cert": "CEPTRA_CLIENT_CERT",
       "client_key": "CEPTRA_CLIENT_KEY", "ca_path": "CEPTRA_CA_PATH", "validate_certs": "CEPTRA_VALIDATE_CERTS",
       "timeout": "CEPTRA_TIMEOUT", "retries": "CEPTRA_RETRIES", "routes": "CEPTRA_ROUTES"}


def test_spec_options_env_fallbacks_and_secrets():
    spec = connection_argument_spec()
    assert set(spec) == set(ENV)
    for name, env in ENV.items():
        assert spec[name]["fallback"][1] == [env]
    assert spec["url"]["required"] is True
    assert spec["token"]["no_log"] is True
    assert spec["validate_certs"]["default"] is True
    assert spec["timeout"]["default"] == 30 and spec["retries"]["default"] == 5
    assert connection_required_together() == [["client_cert", "client_key"]]


def test_spec_is_a_fresh_copy_each_time():
    first = connection_argument_spec()
    first["url"]["required"] = False
    first["extra"] = {}
    assert connection_argument_spec()["url"]["required"] is True and "extra" not in connection_argument_spec()


def test_doc_fragment_documents_exactly_the_spec():
    import yaml

    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = connection_argument_spec()
    assert set(options) == set(spec)
    for name, doc in options.items():
        assert doc["type"] == spec[name]["type"], name
        assert doc.get("default") == spec[name].get("default"), name
        assert ENV[name] in " ".join(doc["description"]), name


class FakeModule:
    def fail_json(self, **kwargs):
        self.failed_with = kwargs
        raise SystemExit(1)


def test_fail_with_error_is_readable():
    module = FakeModule()
    err = CeptraError("PATCH /v1/config failed with 412: version moved", status=412, body={"error": "version moved"},
                      route="config", attempts=1)
    with pytest.raises(SystemExit):
        fail_with_error(module, err, "stage the override", override="x")
    assert module.failed_with == {"msg": "Could not stage the override: PATCH /v1/config failed with 412: version moved",
                                  "status": 412, "route": "config", "error_body": {"error": "version moved"},
                                  "attempts": 1, "override": "x"}


def test_operator_identity_is_one_identity_for_ledgers_and_audit_records():
    from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity

    both = {"CEPTRA_ACTOR": "change-42", "CEPTRA_OPERATOR": "ops-team"}
    assert operator_identity("carol", both) == "carol"
    assert operator_identity(None, both) == "change-42"
    assert operator_identity(None, {"CEPTRA_OPERATOR": "ops-team"}) == "ops-team"
    assert "@" in operator_identity(None, {})
