"""The ingest path of the lab's HTTP API: POST /append and the NDJSON append stream.

This layer only parses requests and serialises answers: routing, appends, the replay-session
bookkeeping of a request and the inline apply are one Cluster call (``append_routed`` for
POST /append, ``append_batch`` per chunk of a stream). An append answer is HTTP 200
whatever its `status` is.
"""
from __future__ import annotations

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web

from ceptra_lab.cluster import Cluster, refused
from ceptra_lab.http_common import (
    CLUSTER,
    LOG,
    ApiError,
    check_json_content_type,
    dumps,
    json_response,
    known_partition,
    loads,
    parse_json_object,
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
    message = parse_json_object(body, "an append message must be a JSON object")
    if "part_id" in message and (message["part_id"] is None or str(message["part_id"]) not in cluster.partitions):
        known_partition(cluster, message["part_id"])
    return json_response(cluster.append_routed(message, len(body)))


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
            out += dumps(refused(None, f"line longer than {line_limit} bytes")) + b"\n"
            pending = await _skip_to_newline(content)
        if out:
            await response.write(out)
    if pending.strip():
        await response.write(_stream_lines(cluster, part_id, [pending], refused_sessions))
    await response.write_eof()


def _stream_lines(cluster: Cluster, part_id: str, lines: list[bytes], refused_sessions: set) -> bytes:
    """Parse the complete lines of a chunk, hand them to the cluster as one batch, serialise the answers."""
    items = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            message = loads(line)
        except ValueError as exc:
            items.append((None, "empty line" if not line.strip() else f"line is not valid JSON: {exc}"))
            continue
        if type(message) is dict:
            items.append((message, len(line)))
        else:
            items.append((None, f"an append message must be a JSON object, got {type(message).__name__}"))
    return b"".join([dumps(response) + b"\n" for response in cluster.append_batch(part_id, items, refused_sessions)])


async def _skip_to_newline(content) -> bytes:
    """Discard the rest of an oversized line; return what follows its newline."""
    while True:
        chunk = await content.readany()
        if not chunk:
            return b""
        if b"\n" in chunk:
            return chunk.split(b"\n", 1)[1]
