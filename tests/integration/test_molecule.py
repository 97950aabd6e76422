"""The Molecule scenarios of the shared roles, on one lab (see molecule_support)."""

import os

from .molecule_support import group_tests, scenarios_of

molecule_lab, test_scenario = group_tests("shared")


def test_every_scenario_is_discovered():
    """The default scenario exists, every directory with a molecule.yml is a test of one group."""
    from .molecule_support import LAB_GROUPS, MOLECULE_ROOT, SCENARIOS
    assert SCENARIOS and SCENARIOS[0] == "default"
    assert os.path.isfile(os.path.join(MOLECULE_ROOT, "config.yml"))
    grouped = [name for group in ("shared", *LAB_GROUPS) for name in scenarios_of(group)]
    assert sorted(grouped) == sorted(SCENARIOS)
