"""The widget's file, the demo pages and widget keys, through the app and the admin CLI.
(The widget itself is exercised in Chromium by tests/browser.)"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from models import alpinechat
from models.config import ROOT, Settings
from scripts import admin_widget


def test_widget_script_is_served_cacheable(client):
    response = client.get("/widget/alpinechat.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (ROOT / "handlers/widget/alpinechat.js").read_bytes()
    etag = response.headers["etag"]
    again = client.get("/widget/alpinechat.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_widget_scopes_are_the_browser_operations(client):
    # chat, lead and escalation carry a scope; widget-config, feedback and telemetry are public.
    assert admin_widget.widget_scopes() == ["chat", "leads.write", "escalations.write"]


def test_widget_key_chats_but_reads_nothing(client, database, make_chatbot):
    bot = make_chatbot()
    with database.unit_of_work() as s:
        _, raw = admin_widget.issue_widget_key(s, alpinechat.get_chatbot(s, bot.slug))
        other = alpinechat.create_chatbot(s, alpinechat.get_tenant(s, bot.tenant_id), bot.slug + "-2", "Other")
        other_slug = other.slug
    headers = {"Authorization": f"Bearer {raw}"}
    chat = client.post(f"/api/chat/{bot.slug}", json={"session_id": "widget-key-1", "message": "Hallo"},
                       headers=headers)
    assert chat.status_code == 200
    assert client.get(f"/api/leads/{bot.slug}", headers=headers).status_code == 401
    assert client.get(f"/api/conversations/{bot.slug}", headers=headers).status_code == 401
    # Bound to its chatbot: another bot of the same tenant is refused.
    refused = client.post(f"/api/chat/{other_slug}", json={"session_id": "widget-key-2", "message": "Hallo"},
                          headers=headers)
    assert refused.status_code in (401, 403)


def test_demo_pages_are_off_unless_enabled(client, make_chatbot):
    bot = make_chatbot()
    assert client.get(f"/demo/{bot.slug}").status_code == 404
    assert Settings.from_env({"DATABASE_URL": "postgresql+psycopg2://db/app"}).demo_pages is False
    assert Settings.from_env({"DATABASE_URL": "postgresql+psycopg2://db/app", "DEMO_PAGES": "1"}).demo_pages is True
    assert Settings.from_env({}).demo_pages is True  # the embedded default


def test_demo_page_embeds_the_widget(settings, database, make_chatbot):
    from handlers.runtime.app import create_app

    bot = make_chatbot()
    hostile_key = 'ac_live_x"><script>alert(1)</script>'
    demo = create_app(dataclasses.replace(settings, demo_pages=True, demo_widget_key=hostile_key), database=database)
    with demo.test_client() as client:
        page = client.get(f"/demo/{bot.slug}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert f'data-chatbot="{bot.slug}"' in page.text and "<script>alert" not in page.text
        assert 'data-key="ac_live_x&quot;&gt;&lt;script&gt;' in page.text
        chosen = client.get(f"/demo/{bot.slug}", params={"key": "ac_live_given"})
        assert 'data-key="ac_live_given"' in chosen.text
        assert client.get("/demo/no-such-bot").status_code == 404


def test_demo_widget_key_replaces_the_last_one(settings, database, make_chatbot):
    bot = make_chatbot()
    first = admin_widget.demo_widget_key(settings.database_url, ["http://127.0.0.1:8000"], slug=bot.slug)
    second = admin_widget.demo_widget_key(settings.database_url, ["http://127.0.0.1:8000"], slug=bot.slug)
    assert first != second
    with database.unit_of_work() as s:
        chatbot = alpinechat.get_chatbot(s, bot.slug)
        keys = [k for k in alpinechat.list_chat_keys(s, chatbot.tenant_id) if k.name == admin_widget.DEMO_KEY_NAME]
        assert sorted(k.revoked_at is None for k in keys) == [False, True]
        assert chatbot.allowed_origins == ["http://127.0.0.1:8000"]
        assert chatbot.widget_config["proactive"][0]["key"] == "demo-welcome"
        assert alpinechat.find_active_chat_key(s, first) is None
        assert alpinechat.find_active_chat_key(s, second).scopes == ["chat", "leads.write", "escalations.write"]
    assert admin_widget.demo_widget_key(settings.database_url, [], slug="no-such-bot") is None


@pytest.mark.slow
def test_admin_creates_a_widget_key(fresh_database_url):
    def admin(*args):
        result = subprocess.run([sys.executable, "-m", "scripts.admin", *args, "--json"], cwd=ROOT,
                                env={**os.environ, "DATABASE_URL": fresh_database_url}, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout), result.stderr

    tenant, _ = admin("tenant", "create", "--name", "Tours", "--admin-email", "a@example.com")
    admin("chatbot", "create", "--tenant", tenant["id"], "--slug", "tours", "--title", "Tours")
    key, warning = admin("widget-key", "create", "--chatbot", "tours", "--allowed-origin", "https://Tours.example/",
                         "--server-url", "https://chat.example")
    assert key["scopes"] == ["chat", "leads.write", "escalations.write"] and key["chatbot"] == "tours"
    assert key["allowed_origins"] == "https://tours.example"
    assert key["snippet"] == (f'<script src="https://chat.example/widget/alpinechat.js" data-chatbot="tours" '
                              f'data-key="{key["key"]}" async></script>')
    assert "public by design" in warning
