"""Unit tests of the shared client against a real (scripted) HTTP server in a thread."""

from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._client import CeptraClient, CeptraError

from ..test_support.http_server import Reply


def make_client(url, **kw):
    """A client that records its backoff sleeps instead of sleeping."""
    kw.setdefault("token", "s3cret-token")
    client = CeptraClient(url, **kw)
    client.sleeps = []
    client.sleep = client.sleeps.append
    return client


def test_get_json_sends_identity_and_no_idempotency_key(server):
    server.on("GET", "/v1/state", Reply(200, {"cluster": {"partitions": 4}, "partitions": []}))
    client = make_client(server.url)
    assert client.get_json("state") == {"cluster": {"partitions": 4}, "partitions": []}
    (rec,) = server.calls()
    assert rec.headers["Authorization"] == "Bearer s3cret-token"
    assert rec.headers["Accept"] == "application/json"
    assert rec.headers["User-Agent"] == "ceptra.backfill"
    assert "Idempotency-Key" not in rec.headers
    assert "Content-Type" not in rec.headers


def test_post_sends_plain_json_content_type_and_uuid4_idempotency_key(server):
    server.on("POST", "/v1/audit", Reply(200, {"id": "a1"}))
    client = make_client(server.url)
    response = client.request("POST", "audit", body={"kind": "note", "details": {"x": 1}})
    assert response.status == 200 and response.json == {"id": "a1"}
    (rec,) = server.calls()
    assert rec.headers["Content-Type"] == "application/json"
    assert uuid.UUID(rec.headers["Idempotency-Key"]).version == 4
    assert rec.json() == {"kind": "note", "details": {"x": 1}}


def test_query_and_path_params_are_encoded(server):
    server.on("GET", "/v1/activate/b%201", Reply(200, {"barrier_id": "b 1"}))
    server.on("GET", "/v1/audit", Reply(200, {"records": []}))
    client = make_client(server.url)
    assert client.get_json("activation", params={"barrier_id": "b 1"})["barrier_id"] == "b 1"
    client.get_json("audit", query={"kind": "config", "since": None})
    assert server.calls(path="/v1/audit")[0].query == {"kind": "config"}


def test_503_storm_is_retried_then_reported_with_the_count(server):
    server.on("PATCH", "/v1/config", Reply(503, {"error": "unavailable", "status": 503}))
    client = make_client(server.url, retries=5)
    with pytest.raises(CeptraError) as info:
        client.request("PATCH", "config", body={"a": 1})
    err = info.value
    assert err.status == 503 and err.attempts == 6
    assert len(server.calls()) == 6
    assert "PATCH /v1/config failed with 503: unavailable" in err.message
    assert "gave up after 6 attempts" in err.message
    # One logical call: one Idempotency-Key reused by every retry.
    keys = {rec.headers["Idempotency-Key"] for rec in server.calls()}
    assert len(keys) == 1
    assert len(client.sleeps) == 5


def test_transient_statuses_then_success(server):
    server.on("GET", "/v1/state", [Reply(502), Reply(504), Reply(503), Reply(200, {"ok": True})])
    client = make_client(server.url)
    assert client.get_json("state") == {"ok": True}
    assert len(server.calls()) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 415, 422])
def test_other_4xx_are_never_retried(server, status):
    server.on("POST", "/v1/activate", Reply(status, {"error": "nope", "status": status}))
    client = make_client(server.url, retries=5)
    with pytest.raises(CeptraError) as info:
        client.request("POST", "activate", body={"bundle_id": "x"})
    assert info.value.status == status
    assert info.value.attempts == 1
    assert len(server.calls()) == 1
    assert client.sleeps == []


def test_429_retry_after_is_honoured(server):
    server.on("GET", "/metrics", [Reply(429, {"error": "slow down"}, headers={"Retry-After": "3"}),
                                  Reply(200, raw="apply_lag_ms{part_id=\"0\"} 1\n")])
    client = make_client(server.url)
    response = client.request("GET", "metrics")
    assert response.status == 200 and response.json is None and "apply_lag_ms" in response.text
    assert client.sleeps == [3.0]


def test_backoff_is_full_jitter_exponential_with_cap(server):
    client = make_client(server.url, backoff_base=0.5, backoff_max=3.0)
    client.random = lambda: 1.0
    assert [client.backoff_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    client.random = lambda: 0.25
    assert client.backoff_delay(2) == 0.25
    assert client.backoff_delay(3, retry_after=7.0) == 7.0


def test_validation_error_message_lists_violations(server):
    body = {"error": "invalid config", "status": 422,
            "violations": [{"path": "lateness_allowance_ms", "message": "must be >= 0"},
                           {"path": "partitions.9", "message": "unknown partition"}]}
    server.on("PATCH", "/v1/config", Reply(422, body))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.request("PATCH", "config", body={"lateness_allowance_ms": -1})
    assert info.value.message == (
        "PATCH /v1/config failed with 422: invalid config "
        "(lateness_allowance_ms: must be >= 0; partitions.9: unknown partition)")
    assert info.value.body == body and info.value.route == "config"


def test_403_names_identity_and_missing_role(server):
    server.on("PATCH", "/v1/config", Reply(403, {"error": "forbidden", "status": 403,
                                                 "identity": "spiffe://ceptra.lab/role/observer"}))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.request("PATCH", "config", body={})
    assert "failed with 403: forbidden" in info.value.message
    assert ("the identity spiffe://ceptra.lab/role/observer lacks role operator; use an operator certificate "
            "or token") in info.value.message.lower()


def test_401_and_412_and_404_hints(server):
    server.on("GET", "/v1/config", Reply(401, {"error": "unauthenticated", "status": 401}))
    server.on("PATCH", "/v1/config", Reply(412, {"error": "version moved", "status": 412}))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.get_json("config")
    assert "token" in info.value.message and "client certificate" in info.value.message
    with pytest.raises(CeptraError) as info:
        client.request("PATCH", "config", body={}, headers={"If-Match": '"3"'})
    assert "read it again" in info.value.message
    assert server.calls("PATCH")[0].headers["If-Match"] == '"3"'
    with pytest.raises(CeptraError) as info:
        client.get_json("state")  # the fake serves no /v1/state
    assert info.value.status == 404
    assert "route 'state'" in info.value.message and "routes option" in info.value.message


def test_error_without_json_body_uses_the_text(server):
    server.on("GET", "/v1/state", Reply(400, raw="plain failure", headers={"Content-Type": "text/plain"}))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.get_json("state")
    assert info.value.message.startswith("GET /v1/state failed with 400: plain failure")


def test_routes_override_and_base_path(server):
    server.on("GET", "/gw/admin/state", Reply(200, {"partitions": []}))
    client = make_client(server.url + "/gw/", routes={"state": "/admin/state"})
    assert client.get_json("state") == {"partitions": []}
    assert server.calls()[0].path == "/gw/admin/state"


@pytest.mark.parametrize("routes, fragment", [
    ({"stat": "/x"}, "unknown route 'stat'"),
    ({"activation": "/act"}, "placeholders ['barrier_id']"),
    ({"state": "v1/state"}, "starting with '/'"),
])
def test_bad_routes_override_is_a_clear_error(routes, fragment):
    with pytest.raises(CeptraError) as info:
        CeptraClient("http://127.0.0.1:9", routes=routes)
    assert fragment in info.value.message


def test_from_env_reads_routes_json_and_settings(server):
    server.on("GET", "/alt/readyz", Reply(200, {"ready": True}))
    env = {"CEPTRA_URL": server.url, "CEPTRA_ROUTES": json.dumps({"readyz": "/alt/readyz"}),
           "CEPTRA_TOKEN": "tok", "CEPTRA_RETRIES": "2", "CEPTRA_VALIDATE_CERTS": "false"}
    client = CeptraClient.from_env(env)
    assert client.retries == 2 and client.validate_certs is False
    assert client.get_json("readyz") == {"ready": True}
    assert server.calls()[0].headers["Authorization"] == "Bearer tok"
    with pytest.raises(CeptraError) as info:
        CeptraClient.from_env({"CEPTRA_URL": server.url, "CEPTRA_ROUTES": "not json"})
    assert "CEPTRA_ROUTES must be a JSON object" in info.value.message


def test_keep_alive_reuses_one_connection(server):
    server.on("GET", "/healthz", Reply(200, {"ok": True}))
    client = make_client(server.url)
    for _request in range(5):
        client.get_json("healthz")
    assert len({rec.client_port for rec in server.calls()}) == 1
    client.close()
    client.get_json("healthz")
    assert len({rec.client_port for rec in server.calls()}) == 2


def test_stale_keep_alive_socket_is_replaced_without_spending_a_retry(server):
    server.on("GET", "/healthz", Reply(200, {"ok": True}, close=True))
    client = make_client(server.url, retries=0)
    for _request in range(3):
        assert client.get_json("healthz") == {"ok": True}
    assert len(server.calls()) == 3


def test_connection_refused_is_retried_then_reported():
    client = make_client("http://127.0.0.1:9", retries=2)
    with pytest.raises(CeptraError) as info:
        client.get_json("state")
    assert info.value.status is None and info.value.attempts == 3
    assert "could not reach http://127.0.0.1:9" in info.value.message
    assert len(client.sleeps) == 2


def test_read_timeout_is_retried(server):
    server.on("GET", "/v1/state", [Reply(200, {"slow": True}, delay=0.5), Reply(200, {"slow": False})])
    client = make_client(server.url, timeout=0.1, retries=3)
    assert client.get_json("state") == {"slow": False}


def test_post_ndjson_joins_lines_and_parses_the_answer(server):
    def answer(rec):
        lines = [json.loads(line) for line in rec.body.split(b"\n") if line]
        out = b"\n".join(json.dumps({"event_id": item["event_id"], "status": "Healthy"}).encode() for item in lines)
        return Reply(200, raw=out + b"\n", headers={"Content-Type": "application/x-ndjson"})

    server.on("POST", "/v1/partitions/3/append-stream", answer)
    client = make_client(server.url)
    lines = [json.dumps({"event_id": "e%d" % n}).encode() for n in range(3)]
    result = client.post_ndjson("append_stream", lines, params={"part_id": "3"})
    assert [item["event_id"] for item in result] == ["e0", "e1", "e2"]
    rec = server.calls()[0]
    assert rec.headers["Content-Type"] == "application/x-ndjson"
    assert rec.body == b"\n".join(lines) + b"\n"
    assert "Idempotency-Key" in rec.headers


def test_post_ndjson_raw_sends_the_body_as_is_and_returns_the_answer_bytes(server):
    answer = b'{"event_id":"e0","status":"Healthy"}\n{"event_id":"e1","status":"Healthy"}\n'
    server.on("POST", "/v1/partitions/3/append-stream",
              [Reply(503, {"error": "busy", "status": 503}),
               Reply(200, raw=answer, headers={"Content-Type": "application/x-ndjson"})])
    client = make_client(server.url)
    body = b'{"event_id":"e0"}\n{"event_id":"e1"}\n'
    response = client.post_ndjson_raw("append_stream", body, params={"part_id": "3"}, query={"dry_run": "1"})
    # The answer is not decoded: the bytes as the server sent them.
    assert response.status == 200 and response.raw == answer
    # The same exchange as post_ndjson: NDJSON headers, auth, one Idempotency-Key across the retry.
    calls = server.calls()
    assert len(calls) == 2 and len(client.sleeps) == 1
    for rec in calls:
        assert rec.body == body and rec.query == {"dry_run": "1"}
        assert rec.headers["Content-Type"] == "application/x-ndjson"
        assert rec.headers["Accept"] == "application/x-ndjson"
        assert rec.headers["Authorization"] == "Bearer s3cret-token"
    assert calls[0].headers["Idempotency-Key"] == calls[1].headers["Idempotency-Key"]


def test_post_ndjson_raw_maps_a_failed_call_to_a_client_error(server):
    server.on("POST", "/v1/partitions/7/append-stream",
              Reply(400, {"error": "bad request", "status": 400, "violations": [{"field": "ts_ns", "message": "missing"}]}))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.post_ndjson_raw("append_stream", b'{"event_id":"x"}\n', params={"part_id": "7"})
    assert info.value.status == 400 and info.value.route == "append_stream" and info.value.attempts == 1
    assert "POST /v1/partitions/7/append-stream failed with 400" in info.value.message
    assert len(server.calls()) == 1   # a 4xx is never retried


def test_get_json_on_non_json_body_is_a_clear_error(server):
    server.on("GET", "/v1/state", Reply(200, raw="<html>login</html>"))
    with pytest.raises(CeptraError) as info:
        make_client(server.url).get_json("state")
    assert "not JSON" in info.value.message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"url": "ceptra:8443"}, "http:// or https://"),
    ({"url": "http://h", "client_cert": "/c.pem"}, "must be given together"),
    ({"url": "http://h", "timeout": 0}, "greater than 0"),
    ({"url": "http://h", "retries": -1}, "0 or more"),
])
def test_bad_settings_are_clear_errors(kwargs, fragment):
    with pytest.raises(CeptraError) as info:
        CeptraClient(**kwargs)
    assert fragment in info.value.message


def test_token_never_appears_in_repr_or_errors(server):
    server.on("GET", "/v1/state", Reply(401, {"error": "bad token", "status": 401}))
    client = make_client(server.url, token="very-secret-value")
    with pytest.raises(CeptraError) as info:
        client.get_json("state")
    assert "very-secret-value" not in info.value.message + repr(client) + repr(info.value.body)


def test_any_2xx_is_success_by_default_and_expected_narrows_it(server):
    server.on("POST", "/v1/audit", Reply(201, {"id": "a-1"}))
    client = make_client(server.url)
    assert client.request("POST", "audit", body={"kind": "k"}).status == 201
    with pytest.raises(CeptraError) as info:
        client.request("POST", "audit", body={"kind": "k"}, expected=(200,))
    assert info.value.status == 201


def test_retry_after_ms_in_an_error_body_is_honoured(server):
    server.on("GET", "/v1/state", [Reply(503, {"error": "injected fault", "status": 503, "retry_after_ms": 50}),
                                   Reply(200, {"ok": 1})])
    client = make_client(server.url)
    assert client.get_json("state") == {"ok": 1}
    assert client.sleeps == [0.05]


def test_403_identity_and_role_read_from_the_lab_message(server):
    message = "identity spiffe://ceptra.lab/role/observer has role observer; this call needs admin"
    server.on("POST", "/v1/test/faults", Reply(403, {"error": message, "status": 403}))
    client = make_client(server.url)
    with pytest.raises(CeptraError) as info:
        client.request("POST", "test_faults", body={})
    assert "The identity spiffe://ceptra.lab/role/observer lacks role admin; use an admin certificate" in info.value.message


def test_threads_sharing_a_client_get_their_own_connection(server):
    import threading

    server.on("GET", "/healthz", Reply(200, {"ok": True}))
    client = make_client(server.url)
    results = []

    def work():
        for _request in range(3):
            results.append(client.get_json("healthz"))

    threads = [threading.Thread(target=work) for _thread in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"ok": True}] * 6
    assert len({rec.client_port for rec in server.calls()}) == 2
    client.close()
    assert client._all_connections == []


def test_raw_body_is_sent_as_is_with_a_chosen_content_type(server):
    server.on("POST", "/v1/definitions/validate", Reply(200, {"bundle_name": "b"}))
    client = make_client(server.url)
    client.request("POST", "definitions_validate", body="name: b\n", headers={"Content-Type": "application/yaml"})
    rec = server.calls()[0]
    assert rec.body == b"name: b\n" and rec.headers["Content-Type"] == "application/yaml"
