"""CORS on the widget endpoints (`x-cors` in the contract), per chatbot's allowed origins."""
from __future__ import annotations

import json

import pytest

from models.config import ROOT

SPEC = json.loads((ROOT / "specs/alpinechat.json").read_text())
ORIGIN = "https://www.tvb-osttirol.example"


def widget_paths(slug):
    """Every path whose operations the contract marks x-cors, with its methods."""
    paths = {}
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if operation.get("x-cors") == "chatbot-allowed-origins":
                paths.setdefault(path.replace("{slug}", slug), set()).add(method.upper())
    return paths


def preflight(client, path, origin, method="POST", headers="authorization, content-type"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def test_the_contract_marks_the_widget_endpoints():
    marked = set(widget_paths("{slug}"))
    assert {"/api/widget-config/{slug}", "/api/chat/{slug}", "/api/chat/{slug}/telemetry/proactive",
            "/api/lead/{slug}", "/api/escalate/{slug}", "/api/feedback/{slug}"} == marked


def test_preflight_from_an_allowed_origin(client, make_bot):
    bot = make_bot(allowed_origins=[ORIGIN, "http://localhost:8080"])
    for path, methods in widget_paths(bot.slug).items():
        method = sorted(methods)[0]
        response = preflight(client, path, ORIGIN, method)
        assert response.status_code == 204, (path, response.text)
        assert response.headers["access-control-allow-origin"] == ORIGIN
        allowed_methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
        assert methods <= allowed_methods
        allowed_headers = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed_headers and "content-type" in allowed_headers
        assert int(response.headers["access-control-max-age"]) > 0
        assert "Origin" in response.headers["vary"]
    assert preflight(client, f"/api/lead/{bot.slug}", "http://localhost:8080").status_code == 204


@pytest.mark.parametrize("origin", ["https://evil.example", "https://www.tvb-osttirol.example:8443",
                                    "http://www.tvb-osttirol.example", "null"])
def test_preflight_from_another_origin_gets_no_cors(client, make_bot, origin):
    bot = make_bot(allowed_origins=[ORIGIN])
    response = preflight(client, f"/api/feedback/{bot.slug}", origin)
    assert response.status_code == 403 and response.json() == {"error": "forbidden"}
    assert "access-control-allow-origin" not in response.headers


def test_preflight_for_unknown_chatbot_or_without_origins(client, make_bot):
    response = preflight(client, "/api/feedback/no-such-bot", ORIGIN)
    assert response.status_code == 404 and "access-control-allow-origin" not in response.headers
    bot = make_bot()  # no allowed origins configured: nobody embeds it cross-origin
    response = preflight(client, f"/api/chat/{bot.slug}", ORIGIN)
    assert response.status_code == 403 and "access-control-allow-origin" not in response.headers


def test_actual_requests_carry_cors_only_for_allowed_origins(client, make_bot):
    bot = make_bot(allowed_origins=[ORIGIN])
    allowed = client.get(f"/api/widget-config/{bot.slug}", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in allowed.headers["vary"]
    assert "retry-after" in allowed.headers["access-control-expose-headers"].lower()
    refused = client.get(f"/api/widget-config/{bot.slug}", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 200 and "access-control-allow-origin" not in refused.headers
    assert "Origin" in refused.headers["vary"]
    # Errors reach the widget too (it must be able to read a 422 or 429).
    invalid = client.post(f"/api/chat/{bot.slug}/telemetry/proactive", json={"kind": "x"}, headers={"Origin": ORIGIN})
    assert invalid.status_code == 422 and invalid.headers["access-control-allow-origin"] == ORIGIN
    lead = client.post(f"/api/lead/{bot.slug}", json={"email": "a@example.com"},
                       headers={**bot.headers, "Origin": ORIGIN})
    assert lead.status_code == 201 and lead.headers["access-control-allow-origin"] == ORIGIN


def test_back_office_endpoints_do_not_answer_cors(client, make_bot):
    bot = make_bot(allowed_origins=[ORIGIN])
    response = preflight(client, f"/api/leads/{bot.slug}", ORIGIN, "GET")
    assert response.status_code == 405 and "access-control-allow-origin" not in response.headers
    response = client.get(f"/api/leads/{bot.slug}", headers={**bot.headers, "Origin": ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_preflight_for_a_method_the_path_lacks_answers_for_its_cors_methods(client, make_bot):
    """A preflight is routed as the method it asks about; a method the path does not
    have gets the path's own preflight (the browser then refuses the request)."""
    bot = make_bot(allowed_origins=[ORIGIN])
    response = preflight(client, f"/api/chat/{bot.slug}", ORIGIN, "DELETE")
    assert response.status_code == 204
    assert "DELETE" not in response.headers["access-control-allow-methods"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert preflight(client, f"/api/chat/{bot.slug}", "https://evil.example", "DELETE").status_code == 403
    assert preflight(client, "/api/no-such-path/x", ORIGIN).status_code == 404
