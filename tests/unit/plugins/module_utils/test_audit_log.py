"""_audit: the one writer and reader of control-plane audit records, and operator identity."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError

from ..test_support.control_plane import ControlPlane


def test_write_then_read_find_and_filter():
    plane = ControlPlane()
    first = _audit.write_record(plane, "note", {"record_id": "r-1", "n": 1})
    _audit.write_record(plane, "note", {"record_id": "r-1", "n": 2})
    _audit.write_record(plane, "outage", {"part_ids": ["3"]})
    assert first["kind"] == "note" and first["actor"] == "spiffe://ceptra.test/role/operator"
    assert [r["kind"] for r in _audit.read_records(plane)] == ["note", "note", "outage"]
    assert [c.query for c in plane.calls if c.method == "GET"] == [None]
    assert [r["details"]["part_ids"] for r in _audit.read_records(plane, kind="outage")] == [["3"]]
    assert _audit.find_record(plane, "note", "r-1")["details"]["n"] == 2          # the newest
    assert _audit.find_record(plane, "note", "r-2") is None
    records = _audit.read_records(plane)
    assert _audit.filter_records(records, actor="nobody") == []
    assert [r["details"].get("n") for r in _audit.filter_records(records, limit=2)] == [2, None]
    assert _audit.filter_records(records, limit=0) == []


def test_a_refused_write_raises_the_clients_error():
    with pytest.raises(CeptraError) as caught:
        _audit.write_record(ControlPlane(role="ingest"), "note", {})
    assert caught.value.status == 403


def test_derived_record_ids_follow_the_content():
    assert _audit.derived_record_id("k", {"a": 1, "b": 2}) == _audit.derived_record_id("k", {"b": 2, "a": 1})
    assert _audit.derived_record_id("k", {"a": 1}) != _audit.derived_record_id("j", {"a": 1})


def test_operator_identity_order():
    assert _audit.operator_identity("carol", environ={"CEPTRA_ACTOR": "x"}) == "carol"
    assert _audit.operator_identity(None, environ={"CEPTRA_ACTOR": "a", "CEPTRA_OPERATOR": "o"}) == "a"
    assert _audit.operator_identity(None, environ={"CEPTRA_OPERATOR": "o"}) == "o"
    assert "@" in _audit.operator_identity(None, environ={})
