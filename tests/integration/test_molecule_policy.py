"""The Molecule scenarios that switch bundles (policy deployment), on a lab of their own."""

from .molecule_support import group_tests

molecule_lab, test_scenario = group_tests("policy")
