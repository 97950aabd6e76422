"""Replay sender against a fake append stream."""

import json
import random

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sender as snd

from ..test_support.control_plane import ControlPlane
from ..test_support.replay_fakes import make_event


@pytest.fixture(autouse=True, params=["per-line answers", "compact answers"])
def answer_form(request, monkeypatch):
    """Every sender test twice: answers the sender decodes and walks line by line, and compact
    answers it checks per request when they are all Healthy (wire.healthy_answers)."""
    monkeypatch.setattr(ControlPlane, "compact_answers", request.param == "compact answers")
    return request.param


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def sender(cluster, **kw):
    sleeps = Sleeps()
    kw.setdefault("rng", random.Random(1))
    s = snd.PartitionSender(cluster, "1", "run-1", sleep=sleeps, **kw)
    return s, sleeps


def test_encode_adds_replay_flag_and_session():
    ev = make_event("3", 42)
    ev.event["flags"] = ["DERIVED"]
    msg = json.loads(snd.encode_event(ev, "run-x", True))
    assert msg["flags"] == ["DERIVED", "REPLAY"]
    assert msg["replay_session"] == "run-x/3" and msg["replay_seq"] == 42
    plain = json.loads(snd.encode_event(ev, "run-x", False))
    assert "replay_session" not in plain and "replay_seq" not in plain
    assert ev.event["flags"] == ["DERIVED"]   # the source's dict is not modified


def test_all_healthy_acks_everything_in_window_sized_requests():
    cluster = ControlPlane(window=4)
    s, dummy = sender(cluster, max_window=16)
    events = [make_event("1", i) for i in range(1, 11)]
    result = s.send(events)
    assert result.acked == 10 and result.stop is None
    assert cluster.applied["1"] == [e.event["event_id"] for e in events]
    # the first request uses max_window, later ones follow the hinted window of 4
    assert [len(seqs) for dummy, seqs in cluster.requests] == [10]
    result = s.send([make_event("1", i) for i in range(11, 21)])
    assert [len(seqs) for dummy, seqs in cluster.requests[1:]] == [4, 4, 2]


def test_all_healthy_compact_answers_skip_the_per_event_walk(monkeypatch, answer_form):
    walked = []
    original = snd.PartitionSender._walk_answers
    monkeypatch.setattr(snd.PartitionSender, "_walk_answers", lambda self, *a: walked.append(1) or original(self, *a))
    cluster = ControlPlane(window=4)
    s, dummy = sender(cluster, max_window=16)
    first = s.send([make_event("1", i) for i in range(1, 6)])
    again = s.send([make_event("1", i) for i in range(1, 6)])      # replay session: all duplicates
    assert (first.acked, first.duplicates, again.acked, again.duplicates) == (5, 0, 5, 5)
    assert first.acked_bytes == again.acked_bytes > 0 and s.window == 4
    assert len(walked) == (0 if answer_form == "compact answers" else 3)


def test_transient_resends_the_same_seqs_in_order_after_hinted_backoff():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 7)]
    cluster.script[events[2].event["event_id"]] = [
        {"status": "TransientBackpressure", "cep_status_reason": "TRANSIENT_BACKPRESSURE",
         "cep_credit_hint": {"client_window_size": 2, "retry_backoff_ms": 80}}]
    s, sleeps = sender(cluster, max_window=64)
    result = s.send(events)
    assert result.acked == 6 and result.retries == 1
    assert cluster.requests[0][1] == [1, 2, 3, 4, 5, 6]
    # resend starts at the first non-acked event (seq 3), window shrunk to the hint (2)
    assert [seqs for dummy, seqs in cluster.requests[1:]] == [[3, 4], [5, 6]]
    assert len(sleeps) == 1 and 0.040 <= sleeps[0] <= 0.080
    assert cluster.applied["1"] == [e.event["event_id"] for e in events]


def test_backoff_without_hint_is_25_to_50_ms():
    cluster = ControlPlane()
    events = [make_event("1", 1)]
    cluster.script["h-1-000001"] = [{"status": "TransientBackpressure"}] * 5
    s, sleeps = sender(cluster)
    assert s.send(events).acked == 1
    assert len(sleeps) == 5 and all(0.025 <= x <= 0.050 for x in sleeps)


def test_later_healthy_answers_after_a_refusal_are_not_acked():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 5)]
    # event 2 refused, but the (misbehaving) cluster commits 3 and 4 anyway
    cluster.script["h-1-000002"] = [{"status": "TransientBackpressure", "stop_stream": False}]
    s, dummy = sender(cluster)
    result = s.send(events)
    assert result.acked == 4
    assert s.out_of_order_commits == 2
    # 3 and 4 resent, not assumed acked; 2 goes without the session: its seq is below the
    # session's high-water mark now, so session dedup would drop it
    assert cluster.requests[1][1] == ["h-1-000002", 3, 4]
    assert s.gap_resends == 1
    assert sorted(cluster.applied["1"]) == [e.event["event_id"] for e in events]   # nothing lost


def test_permanent_refusal_reports_events_the_cluster_committed_after_it():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 5)]
    cluster.script["h-1-000002"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_SCHEMA",
                                     "stop_stream": False}]
    s, dummy = sender(cluster)
    result = s.send(events)
    assert result.acked == 1 and result.stop["event_id"] == "h-1-000002"
    assert result.stop["committed_after"] == ["h-1-000003", "h-1-000004"]


def test_permanent_refusal_behind_a_transient_one_stops_without_any_resend():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 7)]
    # a cluster without the lab's session rule: 2 transient, 4 refused permanently, 5 and 6 committed
    cluster.script["h-1-000002"] = [{"status": "TransientBackpressure", "stop_stream": False}]
    cluster.script["h-1-000004"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_SCHEMA",
                                     "error": "unknown schema", "stop_stream": False}]
    s, dummy = sender(cluster)
    result = s.send(events)
    assert len(cluster.requests) == 1            # nothing resent after the permanent refusal
    assert s.gap_resends == 0
    assert result.acked == 1
    stop = result.stop
    assert (stop["event_id"], stop["part_id"], stop["seq"]) == ("h-1-000004", "1", 4)
    assert stop["reason"] == "PERMANENT_SCHEMA"
    assert stop["position"] is not None and stop["message"] == "unknown schema"
    assert stop["committed_after"] == ["h-1-000005", "h-1-000006"]


def test_lab_style_transient_retry_after_a_refusal_stops_at_the_refused_event():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 6)]
    # default stop_stream: later events of the request are answered TRANSIENT_RETRY (the lab's rule)
    cluster.script["h-1-000003"] = [{"status": "PermanentDurability", "cep_status_reason": "FUTURE_SKEW"}]
    s, dummy = sender(cluster)
    result = s.send(events)
    assert len(cluster.requests) == 1 and result.acked == 2
    assert result.stop["event_id"] == "h-1-000003" and "committed_after" not in result.stop
    assert cluster.applied["1"] == ["h-1-000001", "h-1-000002"]


def test_permanent_error_stops_partition_with_report_and_sends_nothing_after():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 9)]
    cluster.script["h-1-000004"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_PAYLOAD",
                                     "error": "event larger than max_event_bytes"}]
    s, dummy = sender(cluster, max_window=2)
    result = s.send(events)
    assert result.acked == 3
    assert result.stop["event_id"] == "h-1-000004"
    assert result.stop["reason"] == "PERMANENT_PAYLOAD"
    assert result.stop["position"] == [4] and result.stop["part_id"] == "1"
    assert "max_event_bytes" in result.stop["message"]
    sent = [seq for dummy, seqs in cluster.requests for seq in seqs]
    assert max(sent) == 4          # nothing after the refused event was sent


def test_not_leader_re_resolves_and_retries():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 4)]
    cluster.script["h-1-000002"] = [{"status": "PermanentDurability", "cep_status_reason": "NOT_LEADER:ceptra-2"}]
    resolved = []
    s, dummy = sender(cluster, resolve_leader=lambda part, reason: resolved.append((part, reason)))
    result = s.send(events)
    assert result.acked == 3 and result.stop is None
    assert resolved == [("1", "NOT_LEADER:ceptra-2")]
    assert cluster.applied["1"] == ["h-1-000001", "h-1-000002", "h-1-000003"]


def test_not_leader_forever_stops_with_report():
    cluster = ControlPlane()
    cluster.script["h-1-000001"] = [{"status": "PermanentDurability", "cep_status_reason": "NOT_LEADER"}] * 100
    s, dummy = sender(cluster, resolve_leader=lambda part, reason: None)
    result = s.send([make_event("1", 1)])
    assert result.stop["reason"] == "NOT_LEADER" and "leader kept moving" in result.stop["message"]


def test_durability_fence_waits_for_readiness_then_resumes():
    cluster = ControlPlane()
    cluster.script["h-1-000002"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_DURABILITY"}]
    waits = []
    s, dummy = sender(cluster, wait_durability=lambda part: waits.append(part) or True)
    result = s.send([make_event("1", i) for i in range(1, 4)])
    assert result.acked == 3 and waits == ["1"]


def test_durability_fence_that_does_not_clear_stops_the_partition():
    cluster = ControlPlane()
    cluster.script["h-1-000001"] = [{"status": "PermanentDurability", "cep_status_reason": "PERMANENT_DURABILITY"}]
    s, dummy = sender(cluster, wait_durability=lambda part: False)
    result = s.send([make_event("1", 1)])
    assert result.acked == 0 and result.stop["reason"] == "PERMANENT_DURABILITY"


def test_duplicates_count_as_acked():
    cluster = ControlPlane()
    events = [make_event("1", i) for i in range(1, 4)]
    s, dummy = sender(cluster)
    s.send(events)
    again = s.send(events)          # e.g. a worker killed between ack and cursor commit
    assert again.acked == 3 and again.duplicates == 3
    assert len(cluster.applied["1"]) == 3


def test_transport_errors_are_retried_then_reported():
    cluster = ControlPlane()
    cluster.fail_requests = 2
    s, sleeps = sender(cluster)
    assert s.send([make_event("1", 1)]).acked == 1
    assert len(sleeps) == 2
    cluster.fail_requests = 100
    result = s.send([make_event("1", 2)])
    assert result.stop["reason"] == "TRANSPORT"


def test_auth_error_is_fatal_for_the_run():
    class Refusing(ControlPlane):
        def post_ndjson_raw(self, *a, **kw):
            raise CeptraError("POST /v1/partitions/0/append-stream failed with 403: identity lacks the ingest role",
                              status=403, route="append_stream")
    s = snd.PartitionSender(Refusing(), "0", "r", sleep=lambda x: None)
    with pytest.raises(snd.SenderFatal, match="ingest role"):
        s.send([make_event("0", 1)])


def test_stop_request_interrupts_between_requests():
    cluster = ControlPlane()
    cluster.script["h-1-000001"] = [{"status": "TransientBackpressure"}] * 3
    stop = {"now": False}

    def sleep(seconds):
        stop["now"] = True
    s = snd.PartitionSender(cluster, "1", "run-1", sleep=sleep, should_stop=lambda: stop["now"])
    result = s.send([make_event("1", 1)])
    assert result.interrupted and result.acked == 0


def test_encode_uses_the_wire_line_of_a_historic_event_and_matches_the_dict_encoding():
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc
    from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import HistoricEvent
    event = {"event_id": "h-3-\u00e9", "part_id": "3", "partition_key": "k", "ts_ns": 17, "schema_key": "s",
             "payload": {"metric": "m", "value": 1.5}, "flags": ["LATE", "REPLAY"]}
    dict_only = HistoricEvent("3", (5,), 42, event, 100, None)
    with_wire = dict_only._replace(wire=enc.wire_from_event(event),
                                   event={"event_id": "h-3-\u00e9", "ts_ns": 17})   # read_wire's summary
    for sessions in (True, False):
        assert json.loads(snd.encode_event(with_wire, "run-x", sessions)) == \
            json.loads(snd.encode_event(dict_only, "run-x", sessions))
    suffix = enc.session_suffix("run-x", "3", True)
    assert snd.encode_event(with_wire, "run-x", True, suffix) == snd.encode_event(with_wire, "run-x", True)
    assert json.loads(snd.encode_event(with_wire, "run-x", True))["replay_seq"] == 42


def test_sender_parses_answers_of_the_shared_client_with_the_fast_reader(monkeypatch):
    from ansible_collections.ceptra.backfill.plugins.module_utils import _client
    client = _client.CeptraClient("http://127.0.0.1:9", token="t", retries=0)
    posted = []

    def fake_send(method, route, path, payload, headers, expected):
        lines = payload.split(b"\n")[:-1]
        posted.append((path, len(lines)))
        hint = {"client_window_size": 3, "retry_backoff_ms": 0}
        body = b"".join(json.dumps({"status": "Healthy", "event_id": json.loads(x)["event_id"],
                                    "duplicate": json.loads(x)["replay_seq"] == 2,
                                    "cep_credit_hint": hint}).encode() + b"\n" for x in lines)
        return _client.Response(200, _client.Headers([]), body)

    monkeypatch.setattr(client, "_send", fake_send)
    s, dummy = sender(client, max_window=16)
    result = s.send([make_event("1", i) for i in range(1, 8)])
    assert result.acked == 7 and result.duplicates == 1 and result.stop is None
    # first request at max_window, then the hinted window of 3
    assert posted == [("/v1/partitions/1/append-stream", 7)]
    s.send([make_event("1", i) for i in range(8, 15)])
    assert [n for dummy, n in posted[1:]] == [3, 3, 1]
