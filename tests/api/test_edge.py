"""The edge layer through the app: spec-declared codings, media types, caching of personal
data and security headers, on every operation the contracts name."""
from __future__ import annotations

import gzip
import json
import zlib

import pytest

from handlers.runtime.cors import ChatbotCorsMiddleware
from handlers.runtime.middleware import ALPINECHAT_EDGE_CODES
from handlers.runtime.specs import load_contracts

CONTRACTS = load_contracts(check_fresh=False)
BODY_OPERATIONS = [op for api in CONTRACTS for op in api.operations.values() if op.request_schema is not None]
UUID = "00000000-0000-4000-8000-000000000000"
BODIES = {  # a body each operation accepts as valid JSON (not necessarily successful)
    "/api/v1/ingest/events": {"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"}}]},
    "/api/v1/ingest/snapshots": {"snapshotType": "open", "actor": {"email": "a@b.co"}, "metrics": {"n": 1}},
    "/api/chat/{slug}": {"session_id": "edge-session", "message": "Hallo"},
    "/api/chat/{slug}/telemetry/proactive": {"kind": "fire", "trigger_key": "edge"},
    "/api/escalate/{slug}": {"email": "a@b.co", "message": "Bitte melden"},
    "/api/lead/{slug}": {"email": "a@b.co"},
    "/api/feedback/{slug}": {"rating": 1, "conversation_id": UUID},
}


@pytest.fixture
def target(make_ingest_key, make_chatbot):
    """(url, auth headers) for an operation, with a fresh key and chatbot (fresh limits)."""

    def make(operation):
        if operation.api is CONTRACTS.wepeople:
            return operation.path, make_ingest_key().headers
        bot = make_chatbot(widget_config={"widget": {"lead_capture": True}})
        return operation.path.replace("{slug}", bot.slug), bot.headers

    return make


def _assert_shape(operation, response):
    body = response.json()
    assert response.headers["x-request-id"]
    if operation.api is CONTRACTS.wepeople:
        assert body["error"]["requestId"] == response.headers["x-request-id"]
    elif response.status_code == 422:
        assert set(body) == {"message", "errors"}
    else:
        assert set(body) == {"error"}
    return body


def test_the_edge_codes_are_alpinechat_codes_with_their_statuses():
    codes = CONTRACTS.alpinechat.schema("Error")["properties"]["error"]["x-codes"]
    for status, code in ALPINECHAT_EDGE_CODES.items():
        assert codes[code]["status"] == status, code


def test_every_body_operation_is_listed():
    assert {op.path for op in BODY_OPERATIONS} == set(BODIES)


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=lambda op: op.operation_id)
def test_gzip_and_deflate_bodies_are_answered_as_the_plain_body(client, target, operation):
    assert operation.ext("x-content-encodings") == ["gzip", "deflate"]
    url, auth = target(operation)
    raw = json.dumps(BODIES[operation.path]).encode()
    statuses = []
    for coding, data in ((None, raw), ("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        headers = {**auth, "Content-Type": "application/json", **({"Content-Encoding": coding} if coding else {})}
        response = client.post(url, content=data, headers=headers)
        statuses.append(response.status_code)
    assert statuses[0] < 400 or statuses[0] == 404, statuses  # feedback on an unknown conversation: 404
    assert statuses == [statuses[0]] * 3


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=lambda op: op.operation_id)
def test_missing_content_type_is_415_in_the_api_shape(client, target, operation):
    url, auth = target(operation)
    response = client.post(url, content=json.dumps(BODIES[operation.path]).encode(), headers=auth)
    assert response.status_code == 415
    body = _assert_shape(operation, response)
    assert body["error"] == "unsupported_media_type" or body["error"]["code"] == "invalid_body"


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=lambda op: op.operation_id)
def test_unknown_coding_is_415_with_accept_encoding(client, target, operation):
    url, auth = target(operation)
    response = client.post(url, content=b"{}", headers={**auth, "Content-Type": "application/json",
                                                         "Content-Encoding": "br"})
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "gzip, deflate, identity"
    _assert_shape(operation, response)


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=lambda op: op.operation_id)
def test_bombs_and_corrupt_streams(client, target, operation):
    url, auth = target(operation)
    headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    bomb = gzip.compress(b" " * (operation.max_body_bytes + 1))
    response = client.post(url, content=bomb, headers=headers)
    assert response.status_code == 413 and len(bomb) < operation.max_body_bytes // 100
    _assert_shape(operation, response)
    response = client.post(url, content=gzip.compress(b"{}")[:-3], headers=headers)
    assert response.status_code == (400 if operation.api is CONTRACTS.wepeople else 422)
    assert "corrupt" in json.dumps(_assert_shape(operation, response))


def test_personal_data_is_not_stored_by_caches(client, make_chatbot):
    bot = make_chatbot()
    marked = {op.path for op in CONTRACTS.alpinechat.operations.values() if op.source.get("x-personal-data")}
    assert {"/api/leads/{slug}", "/api/escalations/{slug}", "/api/conversations/{slug}",
            "/api/conversations/{slug}/{conversation_id}/messages", "/api/lead/{slug}",
            "/api/escalate/{slug}"} <= marked
    for path in ("/api/leads/{slug}", "/api/escalations/{slug}", "/api/conversations/{slug}"):
        response = client.get(path.replace("{slug}", bot.slug), headers=bot.headers)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
    public = client.get(f"/api/widget-config/{bot.slug}")
    assert public.headers["cache-control"] != "no-store"  # its own x-cache-control
    assert "cache-control" not in client.get("/api/healthz").headers


@pytest.mark.parametrize("path", ["/api/healthz", "/api/v1/ingest/ping", "/api/nothing", "/openapi/v1.yaml",
                                  "/api/widget-config/de%00mo", "/api//healthz"])
def test_every_response_has_nosniff_and_a_request_id(client, path):
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"].startswith("req_")
    assert "server" not in response.headers


@pytest.mark.parametrize("path", ["/api//healthz", "/api/widget-config/de%00mo", "/api/leads/a%01b",
                                  "/api/v1/ingest//ping", "/api/conversations/x/%00/messages"])
def test_empty_segments_and_control_characters_are_404(client, path):
    response = client.get(path, headers={"Authorization": "Bearer x"})
    assert response.status_code == 404
    body = response.json()
    assert body == {"error": "not_found"} or body["error"]["code"] == "invalid_body"


def test_a_failing_middleware_answers_in_the_api_shape(client, make_chatbot, monkeypatch):
    """A cross-origin widget request while the chatbot lookup fails (the database is down):
    the CORS layer runs outside connexion's error handling, yet the answer has the shape."""
    bot = make_chatbot(allowed_origins=["https://site.example"])

    def failing(self, slug):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(ChatbotCorsMiddleware, "_allowed_origins", failing)
    response = client.get(f"/api/widget-config/{bot.slug}", headers={"Origin": "https://site.example"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error"}
    assert response.headers["x-request-id"] and response.headers["content-type"] == "application/json"
