"""WePeople's error contract on every kind of failure, through the HTTP app."""
from __future__ import annotations

import json

import pytest
import yaml

from models.config import ROOT
from tests.api.wepeople.helpers import EVENTS, event

SPEC = yaml.safe_load((ROOT / "specs/wepeople-ingest.yaml").read_text())
CODES = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
API_VERSION = SPEC["info"]["x-api-version"]


def assert_wepeople_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "requestId", "docsUrl"}
    assert error["code"] == code and code in CODES
    assert error["message"]
    assert error["requestId"] == response.headers["X-Request-Id"]
    assert response.headers["X-API-Version"] == API_VERSION
    assert error["docsUrl"].endswith(f"/docs/wepeople/errors/{code}")
    assert "Traceback" not in response.text
    return error


def test_missing_key_is_missing_auth(client):
    assert_wepeople_error(client.get("/api/v1/ingest/ping"), 401, "missing_auth")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer "])
def test_non_bearer_authorization_is_missing_auth(client, header):
    assert_wepeople_error(client.get("/api/v1/ingest/ping", headers={"Authorization": header}), 401, "missing_auth")


def test_unknown_key_is_invalid_key(client):
    response = client.get("/api/v1/ingest/ping", headers={"Authorization": "Bearer wp_live_nope"})
    assert_wepeople_error(response, 401, "invalid_key")


def app_with_auth_cache(settings, database, seconds: float):
    import dataclasses

    from handlers.runtime.app import create_app

    return create_app(dataclasses.replace(settings, auth_cache_seconds=seconds), database=database)


def test_revoked_key_is_invalid_key(settings, make_ingest_key, database):
    from models import wepeople

    made = make_ingest_key()
    with app_with_auth_cache(settings, database, 0).test_client() as client:  # every request looks the key up
        assert client.get("/api/v1/ingest/ping", headers=made.headers).status_code == 200
        with database.unit_of_work() as s:
            wepeople.revoke_ingest_key(s, made.key_id)
        assert_wepeople_error(client.get("/api/v1/ingest/ping", headers=made.headers), 401, "invalid_key")


def test_revoked_key_is_refused_once_the_auth_cache_window_has_passed(settings, make_ingest_key, database):
    import time

    from models import wepeople

    made = make_ingest_key()
    ttl = 1.5
    with app_with_auth_cache(settings, database, ttl).test_client() as client:
        assert client.get("/api/v1/ingest/ping", headers=made.headers).status_code == 200
        verified_at = time.monotonic()
        with database.unit_of_work() as s:
            wepeople.revoke_ingest_key(s, made.key_id)
        response = client.get("/api/v1/ingest/ping", headers=made.headers)
        if time.monotonic() - verified_at < ttl:  # (a stalled machine may have let the window pass)
            assert response.status_code == 200  # verified a moment ago: no lookup
        time.sleep(max(0.0, verified_at + ttl + 0.1 - time.monotonic()))
        assert_wepeople_error(client.get("/api/v1/ingest/ping", headers=made.headers), 401, "invalid_key")


def test_plan_without_api_access_is_plan_limit(client, make_ingest_key):
    made = make_ingest_key(plan="free")
    assert_wepeople_error(client.get("/api/v1/ingest/ping", headers=made.headers), 402, "plan_limit")


def test_disabled_organization_is_api_disabled(client, make_ingest_key):
    made = make_ingest_key(api_enabled=False)
    assert_wepeople_error(client.get("/api/v1/ingest/ping", headers=made.headers), 402, "api_disabled")


def test_ping_ok_carries_headers(client, make_ingest_key):
    made = make_ingest_key()
    response = client.get("/api/v1/ingest/ping", headers=made.headers)
    assert response.status_code == 200
    body = response.json()
    assert body == {"ok": True, "organizationId": str(made.org_id),
                    "app": {"id": str(made.app_id), "slug": made.app_slug, "name": "Test App"}}
    assert response.headers["X-Request-Id"].startswith("req_")
    assert response.headers["X-API-Version"] == API_VERSION


def test_unknown_route_and_wrong_method(client, make_ingest_key):
    made = make_ingest_key()
    assert_wepeople_error(client.get("/api/v1/ingest/nope", headers=made.headers), 404, "invalid_body")
    response = client.delete("/api/v1/ingest/ping", headers=made.headers)
    assert_wepeople_error(response, 405, "invalid_body")
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_invalid_body(client, make_ingest_key):
    made = make_ingest_key()
    response = client.post("/api/v1/ingest/snapshots", content=b"{not json",
                           headers={**made.headers, "Content-Type": "application/json"})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert "JSON" in error["message"]


def test_wrong_media_type_is_refused(client, make_ingest_key):
    made = make_ingest_key()
    response = client.post("/api/v1/ingest/snapshots", content=b"a=b",
                           headers={**made.headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert_wepeople_error(response, 415, "invalid_body")


def test_schema_violation_names_the_field(client, make_ingest_key):
    made = make_ingest_key()
    response = client.post("/api/v1/ingest/snapshots", json={"snapshotType": "x", "metrics": {}},
                           headers=made.headers)
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert "actor" in error["message"]


def test_body_over_cap_refused_from_content_length(client, make_ingest_key):
    made = make_ingest_key()
    cap = SPEC["paths"]["/api/v1/ingest/events"]["post"]["x-max-body-bytes"]
    body = b'{"events": [' + b" " * cap + b"]}"
    response = client.post("/api/v1/ingest/events", content=body,
                           headers={**made.headers, "Content-Type": "application/json"})
    assert_wepeople_error(response, 413, "batch_too_large")


def test_chunked_body_over_cap_refused(client, make_ingest_key):
    made = make_ingest_key()
    cap = SPEC["paths"]["/api/v1/ingest/events"]["post"]["x-max-body-bytes"]

    def chunks():
        yield b'{"events": ['
        for _ in range(cap // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    response = client.post("/api/v1/ingest/events", content=chunks(),
                           headers={**made.headers, "Content-Type": "application/json"})
    assert_wepeople_error(response, 413, "batch_too_large")


def test_chunked_body_within_cap_is_read(client, make_ingest_key):
    """A chunked body (no Content-Length) reaches validation instead of 'body required'."""
    made = make_ingest_key()
    payload = json.dumps({"snapshotType": "x", "metrics": {}}).encode()

    def chunks():
        yield payload[:10]
        yield payload[10:]

    response = client.post("/api/v1/ingest/snapshots", content=chunks(),
                           headers={**made.headers, "Content-Type": "application/json"})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert "actor" in error["message"]


def test_unexpected_exception_is_internal_error(client, make_ingest_key, monkeypatch, caplog):
    from models import wepeople

    made = make_ingest_key()

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(wepeople, "find_ingest_principal", explode)
    response = client.get("/api/v1/ingest/ping", headers=made.headers)
    error = assert_wepeople_error(response, 500, "internal_error")
    assert "boom" not in response.text
    assert error["requestId"] in caplog.text


def test_docs_url_leads_to_the_code(client):
    error = client.get("/api/v1/ingest/ping").json()["error"]
    path = error["docsUrl"].removeprefix("http://testserver")
    page = client.get(path)
    assert page.status_code == 200
    assert "missing_auth" in page.text and "401" in page.text


def test_rate_limit_from_the_spec(client, app, make_ingest_key, monkeypatch):
    """A spec author lowers x-limits.rateLimits.perKey: the server follows."""
    budgets = app.app.extensions["runtime"].contracts.wepeople.source["x-limits"]["rateLimits"]
    monkeypatch.setitem(budgets, "perKey", "2/minute")
    made = make_ingest_key()
    batch = {"events": [event(0)]}
    first = client.post(EVENTS, json=batch, headers=made.headers)
    assert first.status_code == 202, first.text
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    client.post(EVENTS, json=batch, headers=made.headers)
    limited = client.post(EVENTS, json=batch, headers=made.headers)
    assert_wepeople_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["X-RateLimit-Limit"] == "2" and limited.headers["X-RateLimit-Remaining"] == "0"
    other = make_ingest_key()
    assert client.post(EVENTS, json=batch, headers=other.headers).status_code == 202


def test_ping_is_not_rate_limited(client, app, make_ingest_key, monkeypatch):
    """The ping's contract lists no 429: it is neither refused nor counted."""
    budgets = app.app.extensions["runtime"].contracts.wepeople.source["x-limits"]["rateLimits"]
    monkeypatch.setitem(budgets, "perKey", "2/minute")
    made = make_ingest_key()
    for _ in range(3):
        ping = client.get("/api/v1/ingest/ping", headers=made.headers)
        assert ping.status_code == 200 and "X-RateLimit-Limit" not in ping.headers
    first = client.post(EVENTS, json={"events": [event(0)]}, headers=made.headers)
    assert first.headers["X-RateLimit-Remaining"] == "1"


def test_unknown_query_parameter_is_invalid_body(client, make_ingest_key):
    made = make_ingest_key()
    error = assert_wepeople_error(client.get("/api/v1/ingest/ping?debug=1", headers=made.headers), 400, "invalid_body")
    assert "debug" in error["message"]
