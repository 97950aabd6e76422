"""The Molecule scenarios that wipe partitions (full recovery), on a lab of their own."""

from .molecule_support import group_tests

molecule_lab, test_scenario = group_tests("recovery")
