"""Fixtures for the lab's own tests: a shared test-mode lab and a factory for special ones."""
from __future__ import annotations

import pytest

from ceptra_lab.testing import LabProcess


@pytest.fixture(scope="module")
def lab():
    """A test-mode lab with 4 partitions and the demo tokens, shared by a test module."""
    with LabProcess(partitions=4, test_mode=True) as process:
        yield process


@pytest.fixture
def lab_factory():
    """Start labs with custom options: `lab_factory(partitions=2, apply_capacity=500, ...)`; all stopped at teardown."""
    started: list[LabProcess] = []

    def make(**options) -> LabProcess:
        process = LabProcess(**options)
        started.append(process)
        return process.start()

    yield make
    for process in started:
        process.stop()
