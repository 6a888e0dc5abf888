"""`python -m scripts.admin ... --json` end to end, as an operator runs it."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from models import alpinechat, wepeople
from models.db import Database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin(fresh_database_url):
    def run(*args: str, ok: bool = True):
        result = subprocess.run(
            [sys.executable, "-m", "scripts.admin", *args, "--json"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": fresh_database_url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (result.returncode == 0) is ok, result.stderr
        return (json.loads(result.stdout) if ok else json.loads(result.stderr)), result.stderr

    return run


@pytest.fixture
def db(fresh_database_url):
    database = Database(fresh_database_url)
    yield database
    database.dispose()


def _every_stored_value(db: Database, table: str) -> list[str]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(f"SELECT * FROM {table}")).all()
    return [str(value) for row in rows for value in row]


def test_migrate_reports_the_revision(admin):
    result, _ = admin("migrate")
    assert result["revision"]


def test_wepeople_org_app_key_lifecycle(admin, db):
    org, _ = admin("org", "create", "--name", "Acme", "--plan", "growth")
    assert org["plan"] == "growth" and org["api_enabled"] is True
    app, _ = admin("app", "create", "--org", org["id"], "--slug", "crm", "--name", "CRM",
                   "--allowed-event-types", "ticket.resolved, ticket.opened")
    assert app["allowed_event_types"] == ["ticket.resolved", "ticket.opened"]

    created, warning = admin("key", "create", "--app", app["id"], "--name", "ci")
    raw = created["key"]
    assert raw.startswith("wp_live_") and "shown only this once" in warning
    stored = _every_stored_value(db, "ingest_api_keys")
    assert hashlib.sha256(raw.encode()).hexdigest() in stored
    assert raw not in stored

    listed, _ = admin("key", "list", "--app", app["id"])
    assert [key["id"] for key in listed] == [created["id"]]
    assert raw not in json.dumps(listed) and listed[0]["display"].startswith(raw[:12])
    with db.unit_of_work() as session:
        assert wepeople.find_ingest_principal(session, raw) is not None

    revoked, _ = admin("key", "revoke", "--id", created["id"])
    assert revoked["revoked_at"]
    with db.unit_of_work() as session:
        assert wepeople.find_ingest_principal(session, raw) is None

    updated, _ = admin("org", "set", "--id", org["id"], "--plan", "free", "--api-disabled")
    assert (updated["plan"], updated["api_enabled"]) == ("free", False)
    assert [o["id"] for o in admin("org", "list")[0]] == [org["id"]]
    assert [a["slug"] for a in admin("app", "list", "--org", org["id"])[0]] == ["crm"]


def test_alpinechat_tenant_chatbot_key_lifecycle(admin, db):
    tenant, _ = admin("tenant", "create", "--name", "Tirol", "--admin-email", "admin@example.com")
    bot, _ = admin("chatbot", "create", "--tenant", tenant["id"], "--slug", "tirol-bot", "--title", "Tirol",
                   "--language", "en", "--lead-capture", "--allowed-origin", "https://Tirol.example",
                   "--model", "gpt-4o-mini", "--monthly-budget-usd", "25.5")
    assert bot["lead_capture"] is True and bot["allowed_origins"] == ["https://tirol.example"]
    assert bot["monthly_budget_usd"] == 25.5 and bot["active"] is True

    created, _ = admin("chat-key", "create", "--tenant", tenant["id"], "--chatbot", "tirol-bot",
                       "--scopes", "chat,leads.write")
    raw = created["key"]
    assert raw.startswith("ac_live_") and created["chatbot"] == "tirol-bot"
    assert created["scopes"] == ["chat", "leads.write"]
    assert raw not in _every_stored_value(db, "chat_api_keys")
    with db.unit_of_work() as session:
        key = alpinechat.find_active_chat_key(session, raw)
        assert alpinechat.key_grants(key, ["leads.write"]) and not alpinechat.key_grants(key, ["leads.read"])

    updated, _ = admin("chatbot", "set", "--slug", "tirol-bot", "--inactive", "--webhook-url",
                       "https://hooks.example/alpinechat")
    assert updated["active"] is False and updated["webhook_secret"].startswith("whsec_")
    assert [b["slug"] for b in admin("chatbot", "list", "--tenant", tenant["id"])[0]] == ["tirol-bot"]

    admin("chat-key", "revoke", "--id", created["id"])
    assert admin("chat-key", "list")[0][0]["revoked_at"]
    with db.unit_of_work() as session:
        assert alpinechat.find_active_chat_key(session, raw) is None


def test_user_errors_exit_nonzero_with_a_json_error(admin):
    tenant, _ = admin("tenant", "create", "--name", "Tirol", "--admin-email", "admin@example.com")
    error, _ = admin("chat-key", "create", "--tenant", tenant["id"], "--scopes", "chat,admin", ok=False)
    assert "scopes" in error["error"]
    error, _ = admin("key", "revoke", "--id", str(uuid.uuid4()), ok=False)
    assert "not found" in error["error"]
    admin("chatbot", "create", "--tenant", tenant["id"], "--slug", "taken", "--title", "One")
    error, _ = admin(
        "chatbot", "create", "--tenant", tenant["id"], "--slug", "taken", "--title", "Two", ok=False
    )
    assert "existing record" in error["error"]


def test_demo_is_idempotent_and_issues_fresh_keys(admin, db):
    first, _ = admin("demo")
    second, warning = admin("demo")
    assert "shown only this once" in warning
    for api in ("wepeople", "alpinechat"):
        assert {k: v for k, v in first[api].items() if k != "key"} == {
            k: v for k, v in second[api].items() if k != "key"
        }
        assert first[api]["key"] != second[api]["key"]
    assert first["wepeople"]["app_slug"] == "demo-app" and first["alpinechat"]["chatbot_slug"] == "demo-bot"

    with db.unit_of_work() as session:
        assert len(wepeople.list_organizations(session)) == 1
        assert len(wepeople.list_apps(session)) == 1
        assert len(alpinechat.list_tenants(session)) == 1
        assert len(wepeople.list_ingest_keys(session)) == 2
        assert len(alpinechat.list_chat_keys(session)) == 2
        assert wepeople.find_ingest_principal(session, second["wepeople"]["key"]).plan == "growth"
        chat_key = alpinechat.find_active_chat_key(session, second["alpinechat"]["key"])
        chatbot = alpinechat.get_active_chatbot(session, "demo-bot")
        assert alpinechat.key_grants(chat_key, ["escalations.write"])
        assert alpinechat.key_can_access_chatbot(chat_key, chatbot)
        config = alpinechat.public_widget_config(chatbot)
        assert config["language"] == "de" and config["widget"]["lead_capture"] is True
        assert config["escalation"]["enabled"] and config["features"]["page_context"]["enabled"]
        assert chatbot.allowed_origins == ["http://localhost:8000"]


def test_demo_knowledge_files_ship_with_titles_and_urls():
    files = sorted((ROOT / "scripts" / "demo_knowledge").glob("*.md"))
    assert len(files) == 3
    for path in files:
        header = path.read_text().split("---")[1]
        assert "title:" in header and "url: https://" in header
