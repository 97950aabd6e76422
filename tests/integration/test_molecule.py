"""The Molecule scenarios of the shared roles, on one lab (see molecule_support)."""

import os

import pytest

from .molecule_support import group_lab, run_scenario, scenarios_of

GROUP = "shared"


@pytest.fixture(scope="module")
def molecule_lab(tmp_path_factory):
    """This group's lab, created by the default scenario and destroyed after the last test."""
    yield from group_lab(tmp_path_factory)


@pytest.mark.parametrize("scenario", scenarios_of(GROUP))
def test_scenario(molecule_lab, scenario, record_property):
    run_scenario(molecule_lab, scenario, record_property)


def test_every_scenario_is_discovered():
    """The default scenario exists, every directory with a molecule.yml is a test of one group."""
    from .molecule_support import LAB_GROUPS, MOLECULE_ROOT, SCENARIOS
    assert SCENARIOS and SCENARIOS[0] == "default"
    assert os.path.isfile(os.path.join(MOLECULE_ROOT, "config.yml"))
    grouped = [name for group in ("shared", *LAB_GROUPS) for name in scenarios_of(group)]
    assert sorted(grouped) == sorted(SCENARIOS)
