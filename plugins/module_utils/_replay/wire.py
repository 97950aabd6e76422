# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the replay engine's fast wire encoding.

The worker's hot path per event is: check the row, build its NDJSON line, read the cluster's
answer. Doing that through dicts (``json.loads`` of the payload, then ``json.dumps`` of the
whole message, then ``json.loads`` of each answer line) costs most of the worker's CPU. This
module keeps the payload as the JSON text the database holds, after validating it, and
builds each line with one format string:

- ``wire`` (bytes): the append message without its closing brace, built once by the source:
  ``{"event_id":..,"part_id":..,"partition_key":..,"ts_ns":..,"schema_key":..,"payload":<raw>,"flags":[..]``
- a line = ``wire`` + the per-run suffix ``,"replay_session":"<run>/<part>","replay_seq":N}``
  (or just ``}`` without sessions).

Strings go through the C string encoder of the ``json`` module; payload text is validated
with ``orjson`` when installed (an optional accelerator), else with the standard library's
C scanner (both refuse NaN/Infinity). Payload text that holds a line break (pretty-printed
JSON) is re-serialized, so a line never breaks the NDJSON framing.

Also here: ``post_lines`` (the append-stream exchange through the shared client's
``post_ndjson_raw``, with a cheaper answer parser), ``healthy_answers`` (a request's
answers checked as a whole when they are all Healthy) and ``bulk_gc`` (fewer cyclic-GC
passes while pages stream).

What it saves, per event of client CPU on the 2-core development machine (SQLite, 4
partitions, lab on the same host): the source read with its row checks, payload parse and
wire line costs about 4.7 us (a dict path plus re-encoding costs about 7.6 us), parsing the
answer about 1 us (json.loads per line: about 5 us), and with ``bulk_gc`` the cyclic GC
little (15-20 % of the worker's CPU at the default threshold).
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
from json.encoder import encode_basestring

from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.config import ReplayError

try:  # optional accelerator; the standard library is enough
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

REPLAY_FLAG = "REPLAY"
# Cyclic-GC generation-0 threshold while a replay streams (see ``bulk_gc``); CPython's default is 700.
BULK_GC_THRESHOLD = 100000
# The fields before the payload, in message order (one format string: no per-field calls).
_WIRE_FORMAT = '{"event_id":%s,"part_id":%s,"partition_key":%s,"ts_ns":%d,"schema_key":%s,"payload":%s,"flags":%s'
REPLAY_FLAGS_JSON = '["REPLAY"]'


class PayloadError(ReplayError, ValueError):
    """The payload text is not a JSON object; the message says what it is instead."""


def _reject_constant(name):
    # Python's json accepts NaN/Infinity; they are not JSON and a cluster would refuse them.
    raise ValueError("%s is not a JSON value" % name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN = _DECODER.scan_once
_JSON_WHITESPACE = " \t\n\r"


def json_type(value):
    """A short description of a decoded JSON value's type, for error messages."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def loads(text):
    """Decode JSON text strictly (no NaN/Infinity); raises ValueError on anything that is not JSON."""
    if orjson is not None:
        return orjson.loads(text)
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    return _DECODER.decode(text)


def dumps(value):
    """Compact JSON bytes (UTF-8, no spaces), the same with or without orjson."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _fast_loads(text):
    """Decode one JSON value from str (set below to orjson.loads when installed)."""
    return _stdlib_parse_any(text)


if orjson is not None:
    _fast_loads = orjson.loads   # noqa: F811 - the C decoder replaces the stdlib one
# For the source's per-row hot path (one call, no wrapper): raises ValueError/RecursionError.
fast_loads = _fast_loads
WIRE_FORMAT = _WIRE_FORMAT


def parse_payload_text(text):
    """Validate payload ``text`` (str) as one JSON object; returns the decoded dict.

    Raises PayloadError with the reason ("payload is not valid JSON (...)", "payload must be a
    JSON object, got an array") for anything else.
    """
    try:
        value = _fast_loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("payload is not valid JSON (%s)" % (str(exc).splitlines()[0] if str(exc) else type(exc).__name__,))
    if not isinstance(value, dict):
        raise PayloadError("payload must be a JSON object, got %s" % json_type(value))
    return value


def wire_prefix(event_id, part_id_json, partition_key, ts_ns, schema_key, payload_text, flags_json=REPLAY_FLAGS_JSON):
    """The append message without its closing brace, as UTF-8 bytes.

    ``part_id_json`` is the partition id already JSON-quoted (it is the same for a whole page);
    ``payload_text`` must be validated JSON without line breaks; ``ts_ns`` an int.
    """
    return (_WIRE_FORMAT % (encode_basestring(event_id), part_id_json, encode_basestring(partition_key),
                            ts_ns, encode_basestring(schema_key), payload_text, flags_json)).encode("utf-8")


def wire_from_event(event):
    """``wire`` for an append-message dict (the general path: any field types, REPLAY added)."""
    msg = dict(event)
    flags = msg.get("flags") or []
    if not isinstance(flags, list):
        flags = [flags]
    if REPLAY_FLAG not in flags:
        flags = list(flags) + [REPLAY_FLAG]
    msg["flags"] = flags
    msg.pop("replay_session", None)
    msg.pop("replay_seq", None)
    return dumps(msg)[:-1]


# ``quote(text)``: ``text`` as a JSON string literal (str), by the json module's C encoder
# (non-ASCII kept as UTF-8, like the compact ``dumps``).
quote = encode_basestring


def session_suffix(run_id, part_id, use_sessions):
    """The bytes every line of a partition ends with, before ``replay_seq``'s digits.

    With sessions: ``,"replay_session":"<run_id>/<part_id>","replay_seq":``; the line is then
    ``wire + suffix + b"%d}" % seq``. Without: None (the line is ``wire + b"}"``).
    """
    if not use_sessions:
        return None
    return (',"replay_session":%s,"replay_seq":' % encode_basestring("%s/%s" % (run_id, part_id))).encode("utf-8")


def line_for(wire, suffix, seq):
    """One NDJSON line (bytes, no newline) from a ``wire`` prefix and a session suffix."""
    if suffix is None:
        return wire + b"}"
    return b"%s%s%d}" % (wire, suffix, seq)


def lines_for(wires_and_seqs, suffix):
    """Lines for ``[(wire, seq), ...]`` in one comprehension (the per-event loop stays in C as far as possible)."""
    if suffix is None:
        return [wire + b"}" for wire, _seq in wires_and_seqs]
    return [b"%s%s%d}" % (wire, suffix, seq) for wire, seq in wires_and_seqs]


def ready_lines(events, suffix, max_bytes):
    """``(taken, lines)``: lines for the leading ``events`` that can be sent as they are, passing
    over later copies of events (no line: they are not sent); stops at the first other event.

    Ready = a valid event with a ``wire`` line (historic sources) and a line of at most
    ``max_bytes``; a copy has ``duplicate_of`` set. ``taken`` counts the events covered
    (sent and copies); the caller handles the event at ``taken`` (bad row, oversize, an event
    without ``wire``) its general way. ``suffix`` as from ``session_suffix``. One loop
    without calls: it runs once per event.
    """
    lines = []
    append = lines.append
    taken = 0
    for event in events:
        wire = event.wire
        if wire is None or event.error is not None or event.duplicate_of is not None:
            if event.duplicate_of is not None:
                taken += 1
                continue
            break
        line = wire + b"}" if suffix is None else b"%s%s%d}" % (wire, suffix, event.seq)
        if len(line) > max_bytes:
            break
        append(line)
        taken += 1
    return taken, lines


def post_lines(client, route, lines, params=None):
    """POST NDJSON ``lines`` through the shared client; returns the answers, one per line.

    The same exchange as ``CeptraClient.post_ndjson`` (route table, headers, retries,
    errors), sent with ``post_ndjson_raw`` and the answer parsed by ``parse_response_body``
    (``post_ndjson`` decodes every answer line with json.loads, which costs more than the
    rest of the exchange).
    """
    return parse_answers(client, route, params, post_raw(client, route, lines, params))


def post_raw(client, route, lines, params=None):
    """POST NDJSON ``lines`` through the shared client; returns the client's Response (answer in ``raw``)."""
    payload = b"\n".join(lines) + b"\n" if lines else b""
    return client.post_ndjson_raw(route, payload, params=params)


def parse_answers(client, route, params, response):
    """The answers of ``response`` (from ``post_raw``), one per line; CeptraError for a line that is not JSON."""
    try:
        return parse_response_body(response.raw)
    except ValueError as exc:
        path = client.route_path(route, params)
        raise CeptraError("POST %s returned a line that is not JSON: %s" % (path, exc), status=response.status,
                          route=route, method="POST", path=path) from None


class HealthyAnswers(object):
    """Answers to a request whose every event was answered Healthy: how many of them say
    ``duplicate: true``, and the last answer, decoded (the cluster's latest credit hint)."""

    __slots__ = ("duplicates", "last")

    def __init__(self, duplicates, last):
        self.duplicates, self.last = duplicates, last


_HEALTHY = b'"status":"Healthy"'
_STATUS_KEY = b'"status"'
_DUPLICATE_KEY = b'"duplicate"'
_DUPLICATE_TRUE = b'"duplicate":true'
_DUPLICATE_FALSE = b'"duplicate":false'
_count_healthy = operator.methodcaller("count", _HEALTHY)


def healthy_answers(raw, count):
    """The answer body ``raw`` checked as a whole: a HealthyAnswers when it answers ``count``
    events all Healthy, else None (the caller then decodes and walks every line).

    All Healthy means: exactly ``count`` lines, each ending in a line break; every line holds
    exactly one ``"status"`` key, and it says ``"Healthy"`` (in the compact form; a JSON
    string cannot hold an unescaped quote, so the marker is a key and its value, and a
    nested status or any other spelling takes the per-line path); every ``"duplicate"`` key
    is a plain true or false; the last line decodes as such an answer. This replaces a
    decode of every answer and a walk over them (measured 0.75 and about 0.5 us per event)
    by byte counts in C, for the usual request; any other answer is handled line by line as
    before.
    """
    if not count or raw.count(_STATUS_KEY) != count:
        return None
    lines = raw.split(b"\n")   # count lines and the empty tail
    if len(lines) != count + 1 or lines[-1] or list(map(_count_healthy, lines)).count(1) != count:
        return None
    duplicates = 0
    if _DUPLICATE_KEY in raw:
        duplicates = raw.count(_DUPLICATE_TRUE)
        if duplicates + raw.count(_DUPLICATE_FALSE) != raw.count(_DUPLICATE_KEY):
            return None
    try:
        last = _fast_loads(lines[-2])
    except (ValueError, RecursionError):
        return None
    if last.__class__ is not dict or last.get("status") != "Healthy":
        return None
    return HealthyAnswers(duplicates, last)


def parse_response_body(raw):
    """Decode an NDJSON answer body (bytes) into a list, one item per non-empty line.

    Each line is decoded on its own (a line must hold exactly one JSON value), with orjson
    when installed, else with the standard library's C scanner on the text decoded once.
    Raises ValueError naming the first line that is not JSON.
    """
    if orjson is not None:
        try:
            return [orjson.loads(line) for line in raw.split(b"\n") if line.strip()]
        except ValueError:
            pass   # find the offending line below
    out = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        if not line.strip(_JSON_WHITESPACE):
            continue
        try:
            out.append(_stdlib_parse_any(line))
        except (ValueError, RecursionError):
            raise ValueError("answer line is not JSON: %r" % (line[:200],))
    return out


def _stdlib_parse_any(text):
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        _DECODER.decode(text)   # raises "Extra data"
    return value


@contextlib.contextmanager
def bulk_gc(threshold=BULK_GC_THRESHOLD):
    """Run the cyclic garbage collector less often while a replay streams pages of events.

    The replay's objects hold no reference cycles (reference counting frees them), but with
    CPython's default threshold (a collection every 700 new container objects) the collector
    walks every page in flight again and again: measured (one partition, fake cluster)
    12.5 us of CPU per event at 700, 10.9 at 20,000, 9.7 at 100,000. Raising the
    generation-0 threshold keeps cyclic garbage collected, in larger, rarer passes.
    Process-wide while the block runs (the worker owns its process); the previous
    thresholds are restored on exit, and thresholds already higher are left alone.
    """
    previous = gc.get_threshold()
    if previous[0] and previous[0] < threshold:   # 0 = the collector is tuned off: leave it
        gc.set_threshold(threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
