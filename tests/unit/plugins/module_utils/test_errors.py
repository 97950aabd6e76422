"""One error base: every exception class the collection defines is a CeptraError."""

import importlib
import inspect
import os

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

PACKAGE = "ansible_collections.ceptra.backfill.plugins"
PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 4), "plugins")


def plugin_modules():
    """Every Python module under plugins/module_utils and plugins/modules, as import names."""
    names = []
    for folder in ("module_utils", "modules"):
        top = os.path.join(PLUGINS, folder)
        for directory, _dirs, files in os.walk(top):
            for name in files:
                if name.endswith(".py") and name != "__init__.py":
                    rel = os.path.relpath(os.path.join(directory, name[:-3]), PLUGINS)
                    names.append(PACKAGE + "." + rel.replace(os.sep, "."))
    return sorted(names)


def test_every_exception_class_is_a_ceptra_error():
    defined = []
    for name in plugin_modules():
        module = importlib.import_module(name)
        for _attr, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                defined.append(value)
    assert len(defined) >= 15
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, CeptraError)] == []


def test_a_failed_call_reports_the_step_and_the_call():
    err = CeptraError("GET /v1/state failed with 401: unknown token", status=401, route="state",
                      body={"error": "unknown token"}, attempts=1)
    assert err.module_result("read the cluster state") == {
        "msg": "Could not read the cluster state: GET /v1/state failed with 401: unknown token",
        "status": 401, "route": "state", "error_body": {"error": "unknown token"}, "attempts": 1}


def test_domain_errors_report_their_details_and_their_own_context():
    from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import ControlPlaneError
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import SourceError

    err = ControlPlaneError("bundle b@1 is not on the cluster", msg="ignored", barrier={"state": "pending"},
                            warnings=["w"])
    assert err.module_result("activate bundle b@1") == {"msg": "bundle b@1 is not on the cluster",
                                                        "barrier": {"state": "pending"}}
    assert SourceError("historic source: type must be 'sqlite'").module_result("x", "historic_replay") == {
        "msg": "historic_replay: historic source: type must be 'sqlite'"}


def test_the_client_raises_the_base_class():
    with pytest.raises(CeptraError, match="must be an http:// or https:// URL"):
        CeptraClient("ceptra:8443")
