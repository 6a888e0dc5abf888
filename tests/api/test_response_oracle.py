"""The contract oracle itself: it passes what the contract allows and names what it does not."""
from __future__ import annotations

import httpx
import pytest
from response_oracle import ResponseOracle, sse_data


def _response(method, path, status, body: bytes, content_type="application/json", headers=()):
    request = httpx.Request(method, f"http://testserver{path}")
    return httpx.Response(status, headers=[("content-type", content_type), *headers], content=body,
                          request=request)


def test_a_real_response_is_checked(client, make_ingest_key, contract_oracle):
    before = contract_oracle.checked
    assert client.get("/api/v1/ingest/ping", headers=make_ingest_key().headers).status_code == 200
    assert contract_oracle.checked == before + 1


def test_a_body_missing_a_required_field_fails():
    with pytest.raises(AssertionError, match="breaks the wepeople contract"):
        ResponseOracle().check(_response("GET", "/api/v1/ingest/ping", 200, b'{"ok": true}'))


def test_an_error_body_in_the_other_apis_shape_fails():
    with pytest.raises(AssertionError, match="breaks the alpinechat contract"):
        ResponseOracle().check(_response("GET", "/api/leads/some-bot", 401,
                                         b'{"error": {"code": "invalid_key", "message": "no"}}'))


def test_each_stream_event_is_checked():
    good = b'data: {"type":"text","content":"Hallo"}\n\n: keep-alive\n\ndata: {"type":"done"}\n\n'
    ResponseOracle().check(_response("POST", "/api/chat/some-bot", 200, good, "text/event-stream"))
    bad = good + b'data: {"type":"text"}\n\n'
    with pytest.raises(AssertionError, match="breaks the alpinechat contract"):
        ResponseOracle().check(_response("POST", "/api/chat/some-bot", 200, bad, "text/event-stream"))


def test_an_unlisted_status_is_recorded_by_operation():
    oracle = ResponseOracle()
    oracle.check(_response("GET", "/api/leads/bot-1", 418, b"{}"))
    oracle.check(_response("GET", "/api/leads/bot-2", 418, b"{}"))
    assert oracle.unlisted == {("alpinechat", "GET /api/leads/{slug}", 418): 2}


def test_paths_outside_the_contracts_are_not_checked():
    oracle = ResponseOracle()
    oracle.check(_response("GET", "/docs/wepeople/", 200, b"<html>", "text/html"))
    assert oracle.checked == 0 and not oracle.unlisted


def test_sse_data_joins_multi_line_data_and_skips_comments():
    assert sse_data(b": ping\n\ndata: {\"a\":\ndata: 1}\n\nevent: x\ndata: 2\n\n") == [b'{"a":\n1}', b"2"]
