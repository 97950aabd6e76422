"""Shared pytest fixtures for the collection's tests: a CEPtra lab per test module, the PG DSN.

Tests that need PostgreSQL are marked ``postgres`` and always run: scripts/test starts the
server when it is not running, so an unreachable server is a real failure, never a skip.
"""

import os

import pytest

PG_DSN = os.environ.get("CEPTRA_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture(scope="session")
def pg_dsn():
    """DSN of the test PostgreSQL database."""
    return PG_DSN


@pytest.fixture(scope="module")
def lab():
    """A 4-partition lab in test mode with the demo tokens, shared by one test module."""
    from ceptra_lab.testing import LabProcess

    with LabProcess(partitions=4, test_mode=True) as running:
        yield running


@pytest.fixture
def lab_factory():
    """Start extra labs with custom options; all are stopped at the end of the test."""
    from ceptra_lab.testing import LabProcess

    started = []

    def start(**kwargs):
        proc = LabProcess(**kwargs)
        proc.__enter__()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.__exit__(None, None, None)
