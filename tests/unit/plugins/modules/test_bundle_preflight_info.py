"""Unit tests of the bundle_preflight_info module (fake control plane, a real SQLite history)."""

from ansible_collections.ceptra.backfill.plugins.modules import bundle_preflight_info

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import write_history

BUNDLE_YAML = "bundle:\n  name: unit\n  def_version: 2\nworkflow:\n  name: unit\n  phases: []\n"
QUERY = {"metric": "m_by_zone", "labels": ["zone"], "range_ms": 60000, "upgrade": False, "source_metric": "m",
         "matchers": []}


def test_the_module_reports_missing_attributes_from_a_sqlite_history_and_changes_nothing(tmp_path, run_module):
    path = str(tmp_path / "history.db")
    write_history(path, parts=2, n=5)                     # events of metric "m" without labels
    cluster = ControlPlane()
    cluster.compiled_queries = [QUERY]
    failed, result = run_module(bundle_preflight_info, {"content": BUNDLE_YAML,
                                                        "source": {"type": "sqlite", "path": path}}, cluster)
    assert not failed and result["changed"] is False and result["ok"] is False
    assert result["missing_attributes"] == {"m_by_zone": ["label zone of m"]}
    assert result["history"]["events_scanned"] == 10 and result["upgrade_false_metrics"] == ["m_by_zone"]
    assert any(line.startswith("PROBLEM attributes: metric m_by_zone") for line in result["summary"])
    assert [c.route for c in cluster.writes()] == ["definitions_validate"]


def test_a_bad_source_fails_naming_the_source(tmp_path, run_module):
    failed, result = run_module(bundle_preflight_info, {"content": BUNDLE_YAML, "source": {"type": "sqlite"}},
                                ControlPlane())
    assert failed and "needs 'path'" in result["msg"]
