"""The checklist scenario (its side effect runs scenario_partial), on a lab of its own."""

from .molecule_support import group_tests

molecule_lab, test_scenario = group_tests("checklist")
