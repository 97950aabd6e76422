"""_module: the shared connection options and CeptraModule, the module helper."""

from __future__ import annotations

from ansible_collections.ceptra.backfill.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.ceptra.backfill.plugins.module_utils._client import CONNECTION_DEFAULTS, CeptraClient, CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._module import (
    CeptraModule, connection_argument_spec, connection_required_together)

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


def test_fail_from_is_readable(run_module, monkeypatch):
    """CeptraModule.fail_from: the step, the call's fields, the error's details and the caller's extra keys."""
    err = CeptraError("PATCH /v1/config failed with 412: version moved", status=412, body={"error": "version moved"},
                      route="config", attempts=1, warnings=["the ledger said so"])

    class Failing:
        @staticmethod
        def main():
            module = CeptraModule(argument_spec={})
            module.fail_from(err, "stage the override", override="x")

    failed, result = run_module(Failing, {"url": "http://127.0.0.1:1"})
    assert failed
    assert {k: v for k, v in result.items() if k not in ("failed", "invocation", "warnings")} == {
        "msg": "Could not stage the override: PATCH /v1/config failed with 412: version moved",
        "status": 412, "route": "config", "error_body": {"error": "version moved"}, "attempts": 1, "override": "x"}
    assert "the ledger said so" in str(result["warnings"])


def test_reporting_maps_errors_and_closes_the_client(run_module):
    from ..test_support.control_plane import ControlPlane

    plane = ControlPlane()

    class Reading:
        @staticmethod
        def main():
            module = CeptraModule(argument_spec={})
            with module.reporting("read the thing"):
                module.client.get_json("activation", params={"barrier_id": "b-9"})

    failed, result = run_module(Reading, {}, plane)
    assert failed and result["status"] == 404 and plane.closed
    assert result["msg"].startswith("Could not read the thing: GET /v1/activate/b-9 failed with 404")


def test_connection_defaults_are_one_table():
    spec = connection_argument_spec()
    assert {key: spec[key]["default"] for key in CONNECTION_DEFAULTS} == CONNECTION_DEFAULTS
    client = CeptraClient.from_options({"url": "http://127.0.0.1:1", "timeout": None})
    assert (client.validate_certs, client.timeout, client.retries) == (True, 30.0, 5)
    client = CeptraClient.from_env({"CEPTRA_URL": "http://127.0.0.1:1", "CEPTRA_RETRIES": "2"})
    assert (client.validate_certs, client.timeout, client.retries) == (True, 30.0, 2)


def test_operator_identity_is_one_identity_for_ledgers_and_audit_records():
    from ansible_collections.ceptra.backfill.plugins.module_utils._audit import operator_identity

    both = {"CEPTRA_ACTOR": "change-42", "CEPTRA_OPERATOR": "ops-team"}
    assert operator_identity("carol", both) == "carol"
    assert operator_identity(None, both) == "change-42"
    assert operator_identity(None, {"CEPTRA_OPERATOR": "ops-team"}) == "ops-team"
    assert "@" in operator_identity(None, {})
