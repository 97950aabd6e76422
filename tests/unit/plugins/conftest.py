"""Fixtures of the plugin unit tests (the doubles they use live in ``test_support``)."""

import json

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient

from .test_support.clock import FakeTime
from .test_support.http_server import FakeServer

# What a task gives when the test does not care about the connection: a URL nothing listens on.
CONNECTION = {"url": "http://127.0.0.1:1", "token": "secret-token"}


@pytest.fixture
def server():
    """A scripted HTTP server (``on(method, path, replies)``), stopped after the test."""
    srv = FakeServer()
    yield srv
    srv.close()


@pytest.fixture
def fake_time():
    """A clock that only moves when the code under test sleeps (``.clock``, ``.sleep``, ``.sleeps``)."""
    return FakeTime()


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run a module's ``main()`` as Ansible would: ``run(module, args, client=None,
    check_mode=False, diff=False)`` returns ``(failed, result)``.

    With ``client`` (usually a ``ControlPlane``) every client the module builds from its
    connection options is that one; without it the module talks to ``args["url"]`` for real
    (the ``server`` fixture). ``args`` without a ``url`` get ``CONNECTION`` when a client is given.
    """

    def run(module, args, client=None, check_mode=False, diff=False):
        args = dict(args)
        # A module runs in a process of its own: once a test in this worker imported controller
        # code, Ansible sends module warnings to the controller's display instead of the result,
        # and warnings stay recorded (once each) across module runs. Reset both, as a new process would.
        monkeypatch.setattr(module_internal, "is_controller", False)
        module_warnings._global_warnings.clear()
        module_warnings._global_deprecations.clear()
        if client is not None:
            monkeypatch.setattr(CeptraClient, "from_module", classmethod(lambda cls, _module: client))
            for key, value in CONNECTION.items():
                args.setdefault(key, value)
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        with patch_module_args(args):
            with pytest.raises(SystemExit) as caught:
                module.main()
        return caught.value.code != 0, json.loads(capsys.readouterr().out)

    return run
