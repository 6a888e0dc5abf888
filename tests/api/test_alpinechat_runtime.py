"""AlpineChat's error contract, keys and scopes, and the operations of the runtime issue."""
from __future__ import annotations

import json

import pytest

from models.config import ROOT

SPEC = json.loads((ROOT / "specs/alpinechat.json").read_text())


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": code}


def test_ping_needs_a_key(client):
    assert_error(client.get("/api/ping"), 401, "unauthorized")
    assert_error(client.get("/api/ping", headers={"Authorization": "Bearer ac_live_nope"}), 401, "unauthorized")


def test_ping_reports_tenant_and_scopes(client, make_chatbot, make_chat_key):
    bot = make_chatbot()
    response = client.get("/api/ping", headers=bot.headers)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "tenant": str(bot.tenant_id), "scopes": ["*"]}
    narrow = make_chat_key(bot.tenant_id, ["leads.read"])
    assert client.get("/api/ping", headers=narrow.headers).json()["scopes"] == ["leads.read"]


def test_revoked_key_is_unauthorized(client, make_chatbot, database):
    from models import alpinechat

    bot = make_chatbot()
    with database.unit_of_work() as s:
        alpinechat.revoke_chat_key(s, bot.key_id)
    assert_error(client.get("/api/ping", headers=bot.headers), 401, "unauthorized")


def test_scope_from_the_spec_is_enforced(client, make_chatbot, make_chat_key):
    bot = make_chatbot()
    reader = make_chat_key(bot.tenant_id, ["leads.read"])
    # conversations.read is what the spec requires here; leads.read is not enough.
    assert_error(client.get(f"/api/conversations/{bot.slug}", headers=reader.headers), 401, "unauthorized")


def test_path_parameter_with_a_newline_is_404(client, make_chatbot):
    # Fuzzing found these answered 500: Flask's routing matched what connexion's did not.
    bot = make_chatbot()
    assert_error(client.get("/api/widget-config/ab%0A"), 404, "not_found")
    assert_error(client.get(f"/api/conversations/{bot.slug}/ab%0Acd/messages"), 404, "not_found")
    assert_error(client.post("/api/lead/x%0A", json={}), 404, "not_found")
    assert client.get(f"/api/widget-config/{bot.slug}").status_code == 200


def test_unknown_route_method_and_media_type(client, make_chatbot):
    bot = make_chatbot()
    assert_error(client.get("/api/nope"), 404, "not_found")
    response = client.delete(f"/api/widget-config/{bot.slug}")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    response = client.post(f"/api/feedback/{bot.slug}", content=b"rating=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 415, "unsupported_media_type")


def test_validation_lists_every_failing_field(client, make_chatbot):
    bot = make_chatbot()
    response = client.post(f"/api/feedback/{bot.slug}",
                           json={"rating": 5, "conversation_id": "not-a-uuid", "comment": "x" * 2001})
    assert response.status_code == 422
    body = response.json()
    assert body["message"]
    assert set(body["errors"]) == {"rating", "conversation_id", "comment"}
    assert all(isinstance(m, list) and m for m in body["errors"].values())


def test_missing_required_fields_are_named(client, make_chatbot):
    bot = make_chatbot()
    response = client.post(f"/api/feedback/{bot.slug}", json={})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"rating", "conversation_id"}


def test_malformed_json_is_422(client, make_chatbot):
    bot = make_chatbot()
    response = client.post(f"/api/feedback/{bot.slug}", content=b"{oops",
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "body" in response.json()["errors"]


@pytest.mark.parametrize("body, why", [
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"session_id": "abcd\\ud800", "rating": 1}', "surrogate"),
    (b'{"session_id": "abcd", "rating": 1e400}', "out of range"),
    # An AlpineChat body nests at most 100 levels: deeper ones failed in the validator's
    # error reporting, the NUL replacement, or the JSON columns' encoder.
    (b'{"session_id": "abcd", "rating": 1, "x": ' + b"[" * 100 + b"]" * 100 + b"}", "at most 100 levels"),
    (b'{"session_id": "ab\\u0000", "rating": 1, "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "at most 100 levels"),
], ids=["deep", "lone-surrogate", "infinite-number", "deeper-than-100", "deep-with-nul"])
def test_json_no_parser_can_keep_is_422(client, make_chatbot, body, why):
    # Both were 500s: the stdlib parser's RecursionError, and a lone surrogate that no
    # database encoding can store.
    bot = make_chatbot()
    response = client.post(f"/api/feedback/{bot.slug}", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert why in response.json()["errors"]["body"][0]


def test_open_objects_may_nest_up_to_100_levels(client, make_chatbot):
    bot = make_chatbot()
    metadata = '{"m": ' + "[" * 98 + "]" * 98 + "}"  # the body is the 100th level around it
    body = '{"kind": "fire", "trigger_key": "exit-intent", "metadata": ' + metadata + "}"
    response = client.post(f"/api/chat/{bot.slug}/telemetry/proactive", content=body,
                           headers={**bot.headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_bad_query_parameters_are_422(client, make_chatbot):
    bot = make_chatbot()
    response = client.get(f"/api/leads/{bot.slug}?limit=0", headers=bot.headers)
    assert response.status_code == 422
    # The reason alone, without the schema dump jsonschema appends to it.
    assert response.json()["errors"]["limit"] == ["0 is less than the minimum of 1"]


def test_body_over_cap_is_413(client, make_chatbot):
    bot = make_chatbot()
    cap = SPEC["x-max-body-bytes"]
    response = client.post(f"/api/feedback/{bot.slug}", content=b"[" + b" " * cap + b"]",
                           headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_unexpected_exception_is_500_without_trace(client, make_chatbot, monkeypatch):
    from models import alpinechat

    bot = make_chatbot()
    monkeypatch.setattr(alpinechat, "public_widget_config", lambda *_: 1 / 0)
    response = client.get(f"/api/widget-config/{bot.slug}")
    assert_error(response, 500, "internal_error")
    assert "ZeroDivision" not in response.text


def test_healthz_ok(client):
    response = client.get("/api/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["errors"] == [] and body["ts"]


def test_healthz_names_the_dependency_that_is_down(client, app, monkeypatch):
    import redis as redis_lib

    runtime = app.app.extensions["runtime"]
    broken = redis_lib.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    monkeypatch.setattr(runtime, "redis", broken)
    response = client.get("/api/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert any(e.startswith("redis") for e in body["errors"])


def test_healthz_database_down(client, app, monkeypatch):
    from models.db import Database

    runtime = app.app.extensions["runtime"]
    monkeypatch.setattr(runtime, "database", Database("postgresql+psycopg2://nobody@127.0.0.1:1/none"))
    response = client.get("/api/healthz")
    assert response.status_code == 503
    assert any(e.startswith("database") for e in response.json()["errors"])


def test_liveness_touches_no_dependency(client, app, monkeypatch):
    """/livez (off the contracts) says the process answers, even while readiness fails."""
    from models.db import Database

    runtime = app.app.extensions["runtime"]
    monkeypatch.setattr(runtime, "database", Database("postgresql+psycopg2://nobody@127.0.0.1:1/none"))
    assert client.get("/api/healthz").status_code == 503
    response = client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "alive"}
    assert client.head("/livez").status_code == 200


def test_widget_config_public_cached_and_conditional(client, make_chatbot):
    bot = make_chatbot(allowed_origins=["https://example.com"], model="gpt-secret-model")
    response = client.get(f"/api/widget-config/{bot.slug}")
    assert response.status_code == 200
    config = response.json()
    allowed = set(SPEC["components"]["schemas"]["WidgetConfig"]["properties"])
    assert set(config) <= allowed and config["slug"] == bot.slug
    assert "gpt-secret-model" not in response.text and "example.com" not in response.text
    assert response.headers["Cache-Control"] == SPEC["paths"]["/api/widget-config/{slug}"]["get"]["x-cache-control"]
    etag = response.headers["ETag"]
    again = client.get(f"/api/widget-config/{bot.slug}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_widget_config_unknown_or_inactive_is_404(client, make_chatbot):
    assert_error(client.get("/api/widget-config/no-such-bot"), 404, "not_found")
    bot = make_chatbot(active=False)
    assert_error(client.get(f"/api/widget-config/{bot.slug}"), 404, "not_found")


@pytest.mark.parametrize("url,marker", [("/openapi/v1.yaml", "openapi: 3.1.0"),
                                        ("/openapi/alpinechat.json", '"openapi": "3.1.0"')])
def test_published_contracts_are_served(client, url, marker):
    response = client.get(url)
    assert response.status_code == 200
    assert marker in response.text


def test_published_yaml_is_the_spec_file(client):
    assert client.get("/openapi/v1.yaml").text == (ROOT / "specs/wepeople-ingest.yaml").read_text()


def test_unknown_query_parameters_are_refused(client, make_chatbot):
    bot = make_chatbot()
    response = client.get(f"/api/escalations/{bot.slug}?limit=5&colour=red", headers=bot.headers)
    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["colour"]
    # x-pagination describes the leads list's cursor: it is no unknown parameter.
    assert client.get(f"/api/leads/{bot.slug}?cursor=", headers=bot.headers).status_code == 200


def test_nul_characters_become_replacement_characters(client, make_chatbot):
    """PostgreSQL cannot store NUL in text or jsonb; no backend gets it, none fails."""
    bot = make_chatbot(widget_config={"widget": {"lead_capture": True}})
    body = b'{"email": "nul@example.com", "name": "A\\u0000B", "company": "\\u0000"}'
    response = client.post(f"/api/lead/{bot.slug}", content=body,
                           headers={**bot.headers, "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    leads = client.get(f"/api/leads/{bot.slug}", headers=bot.headers).json()["data"]
    assert leads[0]["name"] == "A\ufffdB" and leads[0]["company"] == "\ufffd"
