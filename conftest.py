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


# Tests name files worth keeping (a rendered report page, say) with
# ``record_property("artifact", path)``; the paths are printed at the end of the run, also
# under pytest-xdist (user properties travel with the test reports to the controller).
_ARTIFACTS = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _ARTIFACTS.extend(value for name, value in report.user_properties if name == "artifact")


def pytest_terminal_summary(terminalreporter):
    """Print what tests recorded for the reader: the schemathesis run summary
    (tests/integration/test_openapi_schemathesis.py, user property ``schemathesis_summary``)
    and the artifact paths."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "schemathesis_summary" and getattr(report, "when", "call") == "call":
                    terminalreporter.write_sep("=", "schemathesis run summary (%s: %s)" % (outcome, report.nodeid))
                    terminalreporter.write_line(value.rstrip())
    if _ARTIFACTS:
        terminalreporter.write_sep("-", "artifacts")
        for path in _ARTIFACTS:
            terminalreporter.write_line("artifact: %s" % path)
