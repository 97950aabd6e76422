# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fast wire encoding of the replay engine: lines equal to the dict encoding, strict payload
checks, answer parsing; with orjson and with the standard library alone."""

from __future__ import annotations

import json

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request, monkeypatch):
    """Run a test with orjson (when installed) and with the standard library only."""
    if request.param == "orjson":
        if enc.orjson is None:
            pytest.skip("orjson is not installed")  # the stdlib variant still runs
    else:
        monkeypatch.setattr(enc, "orjson", None)
        monkeypatch.setattr(enc, "_fast_loads", enc._stdlib_parse_any)
    return request.param


def test_wire_line_decodes_to_the_same_message_as_the_dict_encoding(backend):
    payload = '{"metric": "m", "labels": {"player": "p\\u00e9-\\"x\\""}, "value": 1.5}'
    wire = enc.wire_prefix("h-3-\u00e9\"1", enc.quote("3"), "k\\ey", 1732600000000000000, "metric_sample_v1", payload)
    suffix = enc.session_suffix("run-1", "3", True)
    line = enc.line_for(wire, suffix, 42)
    assert b"\n" not in line
    assert json.loads(line) == {
        "event_id": "h-3-\u00e9\"1", "part_id": "3", "partition_key": "k\\ey", "ts_ns": 1732600000000000000,
        "schema_key": "metric_sample_v1", "payload": json.loads(payload), "flags": ["REPLAY"],
        "replay_session": "run-1/3", "replay_seq": 42}
    # The payload is embedded as the database wrote it (not re-serialized).
    assert payload.encode() in line
    # Without sessions: no session fields at all.
    assert json.loads(enc.line_for(wire, enc.session_suffix("run-1", "3", False), 42))["flags"] == ["REPLAY"]
    assert "replay_seq" not in json.loads(enc.line_for(wire, None, 42))
    assert enc.lines_for([(wire, 1), (wire, 2)], suffix) == [enc.line_for(wire, suffix, 1), enc.line_for(wire, suffix, 2)]
    assert enc.lines_for([(wire, 1)], None) == [wire + b"}"]


def test_wire_from_event_adds_replay_and_drops_session_fields(backend):
    event = {"event_id": "a", "part_id": "0", "flags": ["LATE"], "payload": {"v": 1},
             "replay_session": "old/0", "replay_seq": 9}
    wire = enc.wire_from_event(event)
    assert json.loads(wire + b"}") == {"event_id": "a", "part_id": "0", "flags": ["LATE", "REPLAY"], "payload": {"v": 1}}
    assert json.loads(enc.wire_from_event({"event_id": "b", "flags": "X"}) + b"}")["flags"] == ["X", "REPLAY"]


@pytest.mark.parametrize("text, message", [
    ("{not json", "payload is not valid JSON"),
    ('{"a": 1} x', "payload is not valid JSON"),
    ('{"a": NaN}', "payload is not valid JSON"),
    ('{"a": Infinity}', "payload is not valid JSON"),
    ("", "payload is not valid JSON"),
    ("[1, 2]", "payload must be a JSON object, got an array"),
    ('"text"', "payload must be a JSON object, got a string"),
    ("3", "payload must be a JSON object, got a number"),
    ("null", "payload must be a JSON object, got null"),
])
def test_bad_payload_text_is_refused_with_the_reason(backend, text, message):
    with pytest.raises(enc.PayloadError, match=message):
        enc.parse_payload_text(text)


def test_good_payload_text_with_surrounding_whitespace_parses(backend):
    assert enc.parse_payload_text(' {"a": [1, {"b": null}]} \n') == {"a": [1, {"b": None}]}
    assert enc.loads(b'{"x": "\xc3\xa9"}') == {"x": "\u00e9"}
    with pytest.raises(ValueError):
        enc.loads('{"x": NaN}')
    assert enc.dumps({"x": "\u00e9", "n": 1}) == '{"x":"\u00e9","n":1}'.encode("utf-8")


def test_answer_body_parses_line_by_line(backend):
    body = (b'{"status":"Healthy","cep_credit_hint":{"client_window_size":8}}\n'
            b'\n{"status":"TransientBackpressure"}\r\n{"status":"Healthy","duplicate":true}\n')
    assert enc.parse_response_body(body) == [
        {"status": "Healthy", "cep_credit_hint": {"client_window_size": 8}},
        {"status": "TransientBackpressure"}, {"status": "Healthy", "duplicate": True}]
    assert enc.parse_response_body(b"") == [] and enc.parse_response_body(b"\n \n") == []


@pytest.mark.parametrize("body", [
    b'{"status":"Healthy"}\n{"status":\n',
    # Two lines that would make one valid document if joined must not be merged.
    b'{"a":[1\n2]}\n',
    # One line holding two values is not one answer.
    b'{"status":"Healthy"},{"status":"Healthy"}\n',
])
def test_answer_body_with_a_bad_line_raises_naming_it(backend, body):
    with pytest.raises(ValueError, match="answer line is not JSON"):
        enc.parse_response_body(body)


def test_json_type_names():
    assert [enc.json_type(v) for v in ({}, [], "", True, 1, 1.0, None)] == [
        "an object", "an array", "a string", "a boolean", "a number", "a number", "null"]


def _lines(n, first_seq=1, part_id="1", run_id="enc-test"):
    suffix = enc.session_suffix(run_id, part_id, True)
    wire = enc.wire_prefix("e-%s" % run_id, enc.quote(part_id), "k", 1732600000000000000, "metric_sample_v1",
                           '{"metric": "m", "value": 1}')
    # distinct event ids per line: replace the id inside the wire for each seq
    return [enc.line_for(wire.replace(b'"e-', b'"e-%d-' % seq, 1), suffix, seq) for seq in range(first_seq, first_seq + n)]


def test_post_lines_through_the_shared_client_against_the_lab(lab):
    from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient
    client = CeptraClient(lab.url, token=lab.tokens["ingest"])
    try:
        answers = enc.post_lines(client, "append_stream", _lines(5), params={"part_id": "1"})
        assert [a["status"] for a in answers] == ["Healthy"] * 5
        # The same lines again: the replay session answers them as duplicates, in order.
        again = enc.post_lines(client, "append_stream", _lines(5), params={"part_id": "1"})
        assert [a.get("duplicate") for a in again] == [True] * 5
        # What the public post_ndjson returns for the next lines has the same shape.
        public = client.post_ndjson("append_stream", _lines(2, first_seq=6), params={"part_id": "1"})
        fast = enc.post_lines(client, "append_stream", _lines(2, first_seq=8), params={"part_id": "1"})
        assert [sorted(a) for a in public] == [sorted(a) for a in fast]
    finally:
        client.close()


def test_post_lines_turns_a_bad_answer_into_a_client_error(monkeypatch):
    from ansible_collections.ceptra.backfill.plugins.module_utils import _client
    client = _client.CeptraClient("http://127.0.0.1:9", token="t", retries=0)
    sent = {}

    def fake_send(method, route, path, payload, headers, expected):
        sent.update(method=method, path=path, payload=payload, content_type=headers["Content-Type"])
        return _client.Response(200, _client.Headers([]), b'{"status":"Healthy"}\n<html>oops\n')

    monkeypatch.setattr(client, "_send", fake_send)
    with pytest.raises(_client.CeptraError, match="returned a line that is not JSON") as info:
        enc.post_lines(client, "append_stream", [b'{"a":1}', b'{"b":2}'], params={"part_id": "3"})
    assert info.value.status == 200 and info.value.route == "append_stream"
    assert sent == {"method": "POST", "path": "/v1/partitions/3/append-stream", "payload": b'{"a":1}\n{"b":2}\n',
                    "content_type": "application/x-ndjson"}


def test_post_lines_sends_through_the_clients_raw_exchange():
    from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, Headers, Response

    class Sub(CeptraClient):
        """Any client with the shared client's interface: post_lines uses its post_ndjson_raw."""

        def post_ndjson_raw(self, route, body, *, params=None, query=None, expected=None):
            self.sent = (route, body, params)
            return Response(200, Headers(), b'{"status":"Healthy","n":1}\n')

    client = Sub("http://127.0.0.1:9")
    assert enc.post_lines(client, "append_stream", [b"{}", b"[]"], params={"part_id": "0"}) == [
        {"status": "Healthy", "n": 1}]
    assert client.sent == ("append_stream", b"{}\n[]\n", {"part_id": "0"})


def test_bulk_gc_raises_the_threshold_only_inside_and_restores_it():
    import gc
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with enc.bulk_gc(threshold=5000):
            assert gc.get_threshold() == (5000, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(90000, 10, 10)            # already higher: untouched
        with enc.bulk_gc(threshold=5000):
            assert gc.get_threshold() == (90000, 10, 10)
        with pytest.raises(RuntimeError):
            with enc.bulk_gc(threshold=5000):
                gc.set_threshold(700, 10, 10)
                raise RuntimeError("boom")
        assert gc.get_threshold() == (90000, 10, 10)   # restored on an exception too
    finally:
        gc.set_threshold(*before)


def test_ready_lines_pass_copies_and_stop_at_the_first_event_that_needs_the_general_path():
    from collections import namedtuple
    Ev = namedtuple("Ev", "part_id seq wire error duplicate_of")
    wire = enc.wire_prefix("a", enc.quote("0"), "k", 1, "s", "{}")
    suffix = enc.session_suffix("r", "0", True)
    good = [Ev("0", i, wire, None, None) for i in (1, 2)]
    assert enc.ready_lines(good, suffix, 4096) == (2, [enc.line_for(wire, suffix, 1), enc.line_for(wire, suffix, 2)])
    assert enc.ready_lines(good, None, 4096) == (2, [wire + b"}", wire + b"}"])
    assert enc.ready_lines(good + [Ev("0", 3, None, "payload is not valid JSON", None)] + good, suffix, 4096) == \
        enc.ready_lines(good, suffix, 4096)
    # a later copy of an event is passed over (no line), in the same window as its neighbours
    taken, lines = enc.ready_lines([Ev("0", 3, wire, "duplicate row", (1,))] + good, suffix, 4096)
    assert taken == 3 and lines == enc.ready_lines(good, suffix, 4096)[1]
    assert enc.ready_lines([Ev("0", 3, wire, None, (1,))], suffix, 4096) == (1, [])
    too_long = len(enc.line_for(wire, suffix, 1)) - 1
    assert enc.ready_lines(good, suffix, too_long) == (0, [])
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent
    built_in_memory = HistoricEvent("0", (3,), 3, {"event_id": "m"}, 10, None)   # no wire: the general path
    assert enc.ready_lines(good + [built_in_memory] + good, suffix, 4096) == enc.ready_lines(good, suffix, 4096)


def _answers(*docs, separators=(",", ":")):
    return b"".join(json.dumps(doc, separators=separators).encode() + b"\n" for doc in docs)


HINT = {"client_window_size": 256, "retry_backoff_ms": 0}


def test_healthy_answers_checks_a_whole_request_at_once():
    raw = _answers({"event_id": "a", "status": "Healthy", "cep_credit_hint": HINT, "index": 1},
                   {"event_id": "b", "status": "Healthy", "duplicate": True, "index": 2},
                   {"event_id": "c", "status": "Healthy", "duplicate": False, "cep_credit_hint": dict(HINT, client_window_size=8)})
    found = enc.healthy_answers(raw, 3)
    assert found.duplicates == 1 and found.last["cep_credit_hint"]["client_window_size"] == 8


@pytest.mark.parametrize("raw, count", [
    (_answers({"status": "Healthy"}, {"status": "TransientBackpressure"}), 2),          # a refusal
    (_answers({"status": "Healthy"}, {"status": "Healthy"}), 3),                         # fewer answers than events
    (_answers({"status": "Healthy"}, {"status": "Healthy"})[:-1], 2),                    # last line not ended
    (_answers({"status": "Healthy"}) + b"\n" + _answers({"status": "Healthy"}), 2),      # an empty line
    (_answers({"status": "Healthy", "x": {"status": "Healthy"}}, {"event_id": "b"}), 2),  # 2 + 0 status keys
    (_answers({"event_id": "a", "detail": {"status": "Healthy"}}), 1),                  # nested status only
    (_answers({"status": "Healthy"}, separators=(", ", ": ")), 1),                       # another spelling
    (_answers({"status": "Healthy", "duplicate": "yes"}), 1),                            # not a plain boolean
    (b'{"status":"Healthy"}\n{"status":"Healthy",\n', 2),                                # last line not JSON
])
def test_healthy_answers_leaves_every_other_body_to_the_per_line_walk(raw, count):
    assert enc.healthy_answers(raw, count) is None
