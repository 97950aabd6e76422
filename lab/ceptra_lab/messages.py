"""Append-message validation for the lab's partition engine (contract section 4).

``parse_event`` checks one append message and returns the fields the engine stores in its
WAL, or raises ``MalformedEvent`` saying what to fix (the engine answers it with
PermanentDurability / PERMANENT_PAYLOAD). It decodes the reference wire's
``partition_key_b64`` and ``payload_b64``. Pure: no state, no I/O.
"""
from __future__ import annotations

import base64
import json

_EMPTY_LABELS: dict = {}


class MalformedEvent(ValueError):
    """An append message that can never be accepted (answered PERMANENT_PAYLOAD)."""


def parse_event(msg, part_id: str) -> tuple:
    """Validate an append message; returns its fields or raises MalformedEvent saying what to fix.

    Returns (event_id, ts_ns, partition_key, metric, labels, value, replay, session, seq).
    """
    if type(msg) is not dict:
        raise MalformedEvent("an append message must be a JSON object")
    event_id = msg.get("event_id")
    if type(event_id) is not str or not event_id:
        raise MalformedEvent("event_id is required and must be a non-empty string")
    ts = msg.get("ts_ns")
    if type(ts) is not int or ts < 0:
        raise MalformedEvent("ts_ns is required and must be a non-negative integer (ns since the epoch)")
    key = msg.get("partition_key")
    if type(key) is not str:
        if key is None and isinstance(msg.get("partition_key_b64"), str):
            key = _b64(msg["partition_key_b64"], "partition_key_b64").decode("utf-8", "replace")
        else:
            raise MalformedEvent("partition_key is required and must be a string")
    payload = msg.get("payload")
    if type(payload) is not dict:
        if payload is None and isinstance(msg.get("payload_b64"), str):
            try:
                payload = json.loads(_b64(msg["payload_b64"], "payload_b64"))
            except ValueError:
                raise MalformedEvent("payload_b64 must hold a base64-encoded JSON object") from None
        if type(payload) is not dict:
            raise MalformedEvent("payload is required and must be a JSON object")
    name = payload.get("metric")
    labels = _EMPTY_LABELS
    value = None
    if name is not None:
        if type(name) is not str or not name:
            raise MalformedEvent("payload.metric must be a non-empty string")
        labels = payload.get("labels")
        if labels is None:
            labels = _EMPTY_LABELS
        elif type(labels) is not dict:
            raise MalformedEvent("payload.labels must be an object of string values")
        else:
            for label, label_value in labels.items():
                if type(label_value) is not str:
                    raise MalformedEvent("payload.labels.%s must be a string" % label)
        value = payload.get("value")
        if type(value) is float:
            if value - value != 0.0:          # NaN or infinity
                raise MalformedEvent("payload.value must be a finite number")
            value = value + 0.0   # -0.0 -> 0.0, so min/max do not depend on arrival order
        elif type(value) is int:
            try:
                value = float(value)
            except OverflowError:
                raise MalformedEvent("payload.value is too large for a double") from None
        else:
            raise MalformedEvent("payload.value is required with payload.metric and must be a number")
    flags = msg.get("flags")
    replay = False
    if flags is not None:
        if type(flags) is not list or any(type(flag) is not str for flag in flags):
            raise MalformedEvent("flags must be a list of strings")
        replay = "REPLAY" in flags
    session = msg.get("replay_session")
    seq = msg.get("replay_seq")
    if session is not None or seq is not None:
        if type(session) is not str or not session:
            raise MalformedEvent("replay_session must be a non-empty string, sent together with replay_seq")
        if type(seq) is not int or seq < 0:
            raise MalformedEvent("replay_seq must be a non-negative integer, sent together with replay_session")
    schema_key = msg.get("schema_key")
    if schema_key is not None and type(schema_key) is not str:
        raise MalformedEvent("schema_key must be a string")
    target = msg.get("part_id")
    if target is not None and str(target) != part_id:
        raise MalformedEvent("part_id %s does not match partition %s" % (target, part_id))
    return event_id, ts, key, name, labels, value, replay, session if replay else None, seq


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise MalformedEvent("%s is not valid base64" % field) from None


def event_size(msg: dict) -> int:
    """Bytes of the event as compact JSON (used when the server did not pass raw_size)."""
    return len(json.dumps(msg, separators=(",", ":"), default=str).encode("utf-8"))
