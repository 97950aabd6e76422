"""Test-mode RPCs of the lab that read rule output (contract section 3, "Test RPCs"):
the derived events a partition's rules emitted and the test sink's delivery counters."""
from __future__ import annotations

from aiohttp import web

from ceptra_lab.http_common import (CLUSTER, ApiError, json_response, known_partition, only_keys, query_index,
                                     read_json_object, requires)


def query_partition(request: web.Request) -> str:
    """The known partition a test RPC's ``?part_id=`` names (400 without it, 404 unknown)."""
    if "part_id" not in request.query:
        raise ApiError(400, "query parameter part_id is required, e.g. ?part_id=0")
    return known_partition(request.app[CLUSTER], request.query["part_id"])


@requires("read")
async def derived_events(request: web.Request) -> web.Response:
    """GET /v1/test/derived-events?part_id=P[&since=N]: derived events with raft_log_index > N."""
    cluster = request.app[CLUSTER]
    part_id = query_partition(request)
    since = query_index(request, "since", "0", "a raft log index")
    partition = cluster.partitions[part_id]
    events = partition.derived_events(since)
    ruleset = getattr(partition.active_bundle, "ruleset", None)
    return json_response({"part_id": part_id, "since": since, "count": len(events),
                          "dropped": partition.derived_dropped, "derived_events": events,
                          "rule_errors": dict(ruleset.errors) if ruleset is not None else {},
                          "rule_evaluations": ruleset.evaluations if ruleset is not None else 0,
                          "sink": cluster.sink.document()})


@requires("read")
async def get_sink(request: web.Request) -> web.Response:
    """GET /v1/test/sink: the test sink's counters."""
    return json_response(request.app[CLUSTER].sink.document())


@requires("test_hooks")
async def post_sink(request: web.Request) -> web.Response:
    """POST /v1/test/sink {"external_decision_ids"?: [...], "reset"?: bool}: register decisions a
    secondary system delivered itself, or start the counters over."""
    body = await read_json_object(request)
    only_keys(body, ("external_decision_ids", "reset"))
    sink = request.app[CLUSTER].sink
    ids = body.get("external_decision_ids", [])
    if not isinstance(ids, list) or not all(isinstance(item, str) and item for item in ids):
        raise ApiError(422, "external_decision_ids must be a list of non-empty strings",
                       violations=[{"path": "external_decision_ids", "message": "list of strings"}])
    if body.get("reset") is True:
        sink.reset()
    elif "reset" in body and not isinstance(body["reset"], bool):
        raise ApiError(422, "reset must be true or false", violations=[{"path": "reset", "message": "boolean"}])
    sink.register_decisions(ids)
    return json_response(sink.document())


ROUTES = [("GET", "/v1/test/derived-events", derived_events), ("GET", "/v1/test/sink", get_sink),
          ("POST", "/v1/test/sink", post_sink)]
