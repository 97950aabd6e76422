"""The Molecule scenarios that wipe partitions (full recovery), on a lab of their own."""

import pytest

from .molecule_support import group_lab, run_scenario, scenarios_of

GROUP = "recovery"


@pytest.fixture(scope="module")
def molecule_lab(tmp_path_factory):
    """This group's lab, created by the default scenario and destroyed after the last test."""
    yield from group_lab(tmp_path_factory)


@pytest.mark.parametrize("scenario", scenarios_of(GROUP))
def test_scenario(molecule_lab, scenario, record_property):
    run_scenario(molecule_lab, scenario, record_property)
