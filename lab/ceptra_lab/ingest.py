"""The ingest path of the lab's HTTP API: POST /append and the NDJSON append stream.

Both routes hand parsed messages to the Cluster (routing, faults, persistence) or straight
to the partition engine; an append answer is HTTP 200 whatever its `status` is.
"""
from __future__ import annotations

from functools import partial

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web

from ceptra_lab.cluster import Cluster
from ceptra_lab.http_common import (
    CLUSTER,
    LOG,
    ApiError,
    check_json_content_type,
    dumps,
    json_response,
    known_partition,
    loads,
    read_body,
    requires,
)


@requires("append")
async def post_append(request: web.Request) -> web.Response:
    """One event (the reference client's wire shape)."""
    cluster = request.app[CLUSTER]
    check_json_content_type(request)
    limit = cluster.config.config["partition_flow"]["max_event_bytes"] * 2 + 4096
    body = await read_body(request, limit)
    try:
        message = loads(body)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ApiError(400, f"an append message must be a JSON object, got {type(message).__name__}")
    if "part_id" in message and (message["part_id"] is None or str(message["part_id"]) not in cluster.partitions):
        known_partition(cluster, message["part_id"])
    return json_response(append_one(cluster, message, len(body)))


@requires("append")
async def post_append_stream(request: web.Request) -> web.StreamResponse:
    """NDJSON in, NDJSON out: one response line per input line, in order."""
    cluster = request.app[CLUSTER]
    part_id = known_partition(cluster, request.match_info["part_id"])
    header = request.headers.get("Content-Type")
    if header is not None and header.split(";")[0].strip().lower() not in (
            "application/x-ndjson", "application/jsonl", "application/json-lines", "application/json"):
        raise ApiError(415, f"Content-Type {header!r} is not accepted; send 'application/x-ndjson'")
    return await append_stream(request, cluster, part_id)


def _refused(event_id, error: str) -> dict:
    return {"event_id": event_id if isinstance(event_id, str) else None, "status": "PermanentDurability",
            "credit_hint": "Shed", "cep_credit_hint": {"client_window_size": 1, "retry_backoff_ms": 0},
            "cep_status_reason": "PERMANENT_PAYLOAD", "error": error}


def append_one(cluster: Cluster, message: dict, size: int) -> dict:
    """Route (part_id, else FNV-1a of partition_key) and append one parsed message (POST /append)."""
    if "partition_key" not in message and "partition_key_b64" in message:
        problem = cluster.normalize(message)
        if problem:
            return _refused(message.get("event_id"), problem)
    part_id = cluster.route(message)
    if part_id is None:
        return _refused(message.get("event_id"), "message needs a part_id or a string partition_key")
    response = cluster.append(part_id, message, size)
    cluster.after_batch(part_id)
    return response


async def append_stream(request: web.Request, cluster: Cluster, part_id: str) -> web.StreamResponse:
    """Process the NDJSON body chunk by chunk: parse every complete line, append, then write all
    responses of the chunk in one write (no per-line awaits)."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await _pump_stream(request, response, cluster, part_id)
    except (ConnectionError, aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        # the client went away mid-stream: what was appended stays appended (as in a cluster)
        LOG.info("append stream for partition %s ended early: %s", part_id, exc)
    return response


async def _pump_stream(request: web.Request, response: web.StreamResponse, cluster: Cluster, part_id: str) -> None:
    line_limit = cluster.config.config["partition_flow"]["max_event_bytes"] * 2 + 4096
    refused_sessions: set = set()   # replay sessions with a permanent refusal in this request
    pending = b""
    content = request.content
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        pending += chunk
        if b"\n" not in chunk and len(pending) <= line_limit:
            continue
        lines = pending.split(b"\n")
        pending = lines.pop()
        out = _stream_lines(cluster, part_id, lines, refused_sessions)
        if len(pending) > line_limit:   # an oversized line: answer it now, skip the rest of it
            out += dumps(_refused(None, f"line longer than {line_limit} bytes")) + b"\n"
            pending = await _skip_to_newline(content)
        cluster.after_batch(part_id)
        if out:
            await response.write(out)
    if pending.strip():
        final = _stream_lines(cluster, part_id, [pending], refused_sessions)
        cluster.after_batch(part_id)
        await response.write(final)
    await response.write_eof()


def _after_refusal(message: dict) -> dict:
    """The answer to a replay event whose session had a permanent refusal earlier in the request."""
    event_id = message.get("event_id")
    return {"event_id": event_id if isinstance(event_id, str) else None, "status": "TransientBackpressure",
            "credit_hint": "Hold", "cep_credit_hint": {"client_window_size": 1, "retry_backoff_ms": 0},
            "cep_status_reason": "TRANSIENT_RETRY",
            "error": "not applied: an earlier event of replay session %r was refused in this request"
                     % message.get("replay_session")}


def _stream_lines(cluster: Cluster, part_id: str, lines: list[bytes], refused_sessions: set | None = None) -> bytes:
    """Append every line of a batch; returns the NDJSON responses (the hot loop of the lab).

    ``refused_sessions`` (kept across the chunks of one request) holds the replay sessions
    that had an event refused with PermanentDurability: later events of such a session in
    the same request are answered TransientBackpressure/TRANSIENT_RETRY, not applied, so
    nothing after a refused replay event is committed (docs/lab.md, assumed contract rule).
    """
    if refused_sessions is None:
        refused_sessions = set()
    if cluster.store is None and cluster.faults[part_id]["not_leader"] == 0:
        append = cluster.partitions[part_id].append        # nothing to intercept: call the engine directly
    else:
        append = partial(cluster.append, part_id)
    out = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            message = loads(line)
        except ValueError as exc:
            response = _refused(None, "empty line" if not line.strip() else f"line is not valid JSON: {exc}")
        else:
            if type(message) is dict:
                session = message.get("replay_session")
                if refused_sessions and type(session) is str and session in refused_sessions:
                    response = _after_refusal(message)
                else:
                    # the engine checks part_id against the stream's partition, sizes and fields
                    response = append(message, len(line))
                    if type(session) is str and response.get("status") == "PermanentDurability":
                        refused_sessions.add(session)
            else:
                response = _refused(None, f"an append message must be a JSON object, got {type(message).__name__}")
        out.append(dumps(response))
    out.append(b"")
    return b"\n".join(out)


async def _skip_to_newline(content) -> bytes:
    """Discard the rest of an oversized line; return what follows its newline."""
    while True:
        chunk = await content.readany()
        if not chunk:
            return b""
        if b"\n" in chunk:
            return chunk.split(b"\n", 1)[1]
