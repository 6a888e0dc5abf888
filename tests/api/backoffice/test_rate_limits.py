"""Per IP x chatbot limits on lead (5/h) and escalation (3/h), as the contract's prose says
and its x-rate-limit declares; shared through Redis when TEST_REDIS_URL is set. The
client IP is the socket peer; X-Forwarded-For counts only from a trusted proxy."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from models.config import ROOT

SPEC = json.loads((ROOT / "specs/alpinechat.json").read_text())


def declared(path):
    return SPEC["paths"][path]["post"]["x-rate-limit"]


@pytest.mark.parametrize("path, prose", [("/api/lead/{slug}", "Lead 5 Req/h"),
                                         ("/api/escalate/{slug}", "Escalation 3 Req/h")])
def test_the_spec_declares_the_limits_the_prose_states(path, prose):
    amount = re.search(r"(\d+) Req/h", prose).group(1)
    assert prose in SPEC["info"]["description"]
    assert declared(path) == {"limit": f"{amount}/hour", "per": ["ip", "chatbot"]}


def body_for(path):
    body = {"email": "gast@example.com"}
    return body if "lead" in path else {**body, "message": "Bitte melden"}


@pytest.mark.parametrize("path, allowed", [("/api/lead/{slug}", 5), ("/api/escalate/{slug}", 3)])
def test_over_the_limit_is_429_with_retry_after(app, make_bot, path, allowed):
    bot, other = make_bot(), make_bot()
    with app.test_client(client=("198.51.100.7", 40000)) as client:
        url = path.replace("{slug}", bot.slug)
        statuses = [client.post(url, json=body_for(path), headers=bot.headers).status_code
                    for _ in range(allowed)]
        assert statuses == [201] * allowed
        refused = client.post(url, json=body_for(path), headers=bot.headers)
        assert refused.status_code == 429
        assert refused.json() == {"error": "rate_limited"}
        assert 0 < int(refused.headers["Retry-After"]) <= 3600
        # Per chatbot: the same IP still reaches another chatbot.
        assert client.post(path.replace("{slug}", other.slug), json=body_for(path),
                           headers=other.headers).status_code == 201
    # Per IP: another client still reaches this chatbot.
    with app.test_client(client=("198.51.100.8", 40000)) as client:
        assert client.post(url, json=body_for(path), headers=bot.headers).status_code == 201
    # Refused requests stored nothing.
    with app.test_client() as client:
        listing = "/api/leads/{slug}" if "lead" in path else "/api/escalations/{slug}"
        rows = client.get(listing.replace("{slug}", bot.slug), headers=bot.headers).json()["data"]
        assert len(rows) == allowed + 1


def test_forwarded_for_is_ignored_from_untrusted_peers(app, make_bot):
    bot = make_bot()
    with app.test_client(client=("203.0.113.9", 40000)) as client:
        statuses = [client.post(f"/api/escalate/{bot.slug}", json=body_for("escalate"),
                                headers={**bot.headers, "X-Forwarded-For": f"192.0.2.{i}"}).status_code
                    for i in range(4)]
    # Spoofed, varying X-Forwarded-For does not buy an untrusted client more budget.
    assert statuses == [201, 201, 201, 429]


@pytest.fixture(scope="module")
def proxied_app(settings, database):
    from handlers.runtime.app import create_app

    return create_app(dataclasses.replace(settings, trusted_proxies=("10.0.0.0/8",)), database=database)


def test_forwarded_for_counts_behind_a_trusted_proxy(proxied_app, make_bot):
    bot = make_bot()
    url = f"/api/escalate/{bot.slug}"
    with proxied_app.test_client(client=("10.1.2.3", 40000)) as proxy:
        def post(forwarded):
            return proxy.post(url, json=body_for("escalate"),
                              headers={**bot.headers, "X-Forwarded-For": forwarded}).status_code

        # The right-most untrusted hop is the client; a client-supplied left part is ignored.
        assert [post(f"1.1.1.1, 192.0.2.{i}") for i in (1, 1, 1)] == [201, 201, 201]
        assert post("192.0.2.1") == 429
        assert post("9.9.9.9, 192.0.2.2, 10.0.0.7") == 201
    # Directly from an untrusted peer the header means nothing.
    with proxied_app.test_client(client=("203.0.113.50", 40000)) as direct:
        for _ in range(3):
            assert direct.post(url, json=body_for("escalate"),
                               headers={**bot.headers, "X-Forwarded-For": "192.0.2.77"}).status_code == 201
        assert direct.post(url, json=body_for("escalate"),
                           headers={**bot.headers, "X-Forwarded-For": "192.0.2.78"}).status_code == 429
