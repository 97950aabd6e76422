"""Root pytest configuration: make the collection importable as ansible_collections.ceptra.backfill."""
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
_link = os.path.join(COLLECTIONS, "ansible_collections", "ceptra", "backfill")
if not os.path.lexists(_link):
    os.makedirs(os.path.dirname(_link), exist_ok=True)
    os.symlink(ROOT, _link)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)
# The shared reference material (bundles, telemetry catalog) sits beside this checkout;
# CEPTRA_SHARED points elsewhere. Tests read it as os.environ["CEPTRA_SHARED"].
os.environ.setdefault("CEPTRA_SHARED", os.path.abspath(os.path.join(ROOT, "..", "shared")))


def pytest_terminal_summary(terminalreporter):
    """Print the run summary a test recorded as the user property ``schemathesis_summary``.

    (tests/integration/test_openapi_schemathesis.py; user properties travel from pytest-xdist
    workers to the controller, so the summary shows in the test output either way.)
    """
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "schemathesis_summary" and getattr(report, "when", "call") == "call":
                    terminalreporter.write_sep("=", "schemathesis run summary (%s: %s)" % (outcome, report.nodeid))
                    terminalreporter.write_line(value.rstrip())
