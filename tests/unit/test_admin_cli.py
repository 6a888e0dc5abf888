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


def test_demo_is_idempotent_and_reuses_its_keys(admin, db, tmp_path):
    keys_file = tmp_path / "var" / "demo-keys.json"
    first, warning = admin("demo", "--keys-file", str(keys_file))
    assert "New demo keys" in warning
    assert keys_file.stat().st_mode & 0o777 == 0o600
    second, warning = admin("demo", "--keys-file", str(keys_file))
    assert "Reusing the demo keys" in warning
    assert first == second  # same objects, same keys
    assert first["wepeople"]["app_slug"] == "demo-app" and first["alpinechat"]["chatbot_slug"] == "demo-bot"

    with db.unit_of_work() as session:
        assert len(wepeople.list_organizations(session)) == 1
        assert len(wepeople.list_apps(session)) == 1
        assert len(alpinechat.list_tenants(session)) == 1
        assert len(wepeople.list_ingest_keys(session)) == 1
        assert len(alpinechat.list_chat_keys(session)) == 1
        assert wepeople.find_ingest_principal(session, second["wepeople"]["key"]).plan == "growth"
        chat_key = alpinechat.find_active_chat_key(session, second["alpinechat"]["key"])
        chatbot = alpinechat.get_active_chatbot(session, "demo-bot")
        assert alpinechat.key_grants(chat_key, ["escalations.write"])
        assert alpinechat.key_can_access_chatbot(chat_key.tenant_id, chat_key.chatbot_id, chatbot)
        config = alpinechat.public_widget_config(chatbot)
        assert config["language"] == "de" and config["widget"]["lead_capture"] is True
        assert config["escalation"]["enabled"] and config["features"]["page_context"]["enabled"]
        assert chatbot.allowed_origins == ["http://localhost:8000"]


def test_demo_knowledge_files_ship_with_titles_and_urls():
    files = sorted((ROOT / "scripts" / "demo_knowledge").glob("*.md"))
    assert len(files) >= 15
    for path in files:
        header = path.read_text().split("---")[1]
        assert "title:" in header and "url: https://" in header


def _active_demo_keys(db) -> tuple[list, list]:
    with db.unit_of_work() as session:
        return ([k.id for k in wepeople.list_ingest_keys(session) if k.revoked_at is None],
                [k.id for k in alpinechat.list_chat_keys(session) if k.revoked_at is None])


def test_demo_rotate_and_a_lost_keys_file_leave_one_valid_key_each(admin, db, tmp_path):
    keys_file = tmp_path / "demo-keys.json"
    first, _ = admin("demo", "--keys-file", str(keys_file))
    rotated, warning = admin("demo", "--keys-file", str(keys_file), "--rotate")
    assert "earlier ones are revoked" in warning
    assert rotated["wepeople"]["key"] != first["wepeople"]["key"]
    assert rotated["alpinechat"]["key"] != first["alpinechat"]["key"]
    keys_file.unlink()  # the raw keys are gone: the old keys must not stay valid
    fresh, _ = admin("demo", "--keys-file", str(keys_file))
    assert fresh["wepeople"]["key"] not in (first["wepeople"]["key"], rotated["wepeople"]["key"])
    ingest_keys, chat_keys = _active_demo_keys(db)
    assert len(ingest_keys) == 1 and len(chat_keys) == 1
    with db.unit_of_work() as session:
        for stale in (first, rotated):
            assert wepeople.find_ingest_principal(session, stale["wepeople"]["key"]) is None
            assert alpinechat.find_active_chat_key(session, stale["alpinechat"]["key"]) is None
        assert wepeople.find_ingest_principal(session, fresh["wepeople"]["key"]) is not None


def test_demo_replaces_a_kept_key_that_was_revoked(admin, db, tmp_path):
    keys_file = tmp_path / "demo-keys.json"
    first, _ = admin("demo", "--keys-file", str(keys_file))
    ingest_key_id = _active_demo_keys(db)[0][0]
    admin("key", "revoke", "--id", str(ingest_key_id))
    second, warning = admin("demo", "--keys-file", str(keys_file))
    assert "New demo keys (wepeople)" in warning
    assert second["wepeople"]["key"] != first["wepeople"]["key"]
    assert second["alpinechat"]["key"] == first["alpinechat"]["key"]


def test_commands_take_a_slug_or_name_as_well_as_an_id(admin):
    org, _ = admin("org", "create", "--name", "Acme")
    app, _ = admin("app", "create", "--org", "Acme", "--slug", "crm", "--name", "CRM")
    assert app["organization_id"] == org["id"]
    by_slug, _ = admin("key", "create", "--app", "crm")
    by_id, _ = admin("key", "create", "--app", app["id"])
    assert by_slug["app_id"] == by_id["app_id"] == app["id"]
    assert {k["id"] for k in admin("key", "list", "--app", "crm")[0]} == {by_slug["id"], by_id["id"]}
    assert len(admin("key", "list", "--org", "acme")[0]) == 2  # names match case-insensitively too
    assert admin("org", "set", "--org", "Acme", "--plan", "growth")[0]["plan"] == "growth"
    assert [a["id"] for a in admin("app", "list", "--org", org["id"])[0]] == [app["id"]]
    assert admin("ingest", "usage", "--org", "Acme")[0] is not None

    tenant, _ = admin("tenant", "create", "--name", "Tirol", "--admin-email", "admin@example.com")
    bot, _ = admin("chatbot", "create", "--tenant", "Tirol", "--slug", "tirol-bot", "--title", "Tirol")
    assert bot["tenant_id"] == tenant["id"]
    assert admin("chatbot", "set", "--chatbot", bot["id"], "--title", "Neu")[0]["title"] == "Neu"
    assert admin("chatbot", "set", "--slug", "tirol-bot", "--title", "Alt")[0]["title"] == "Alt"
    key, _ = admin("chat-key", "create", "--tenant", tenant["id"], "--chatbot", bot["id"], "--scopes", "chat")
    assert key["chatbot"] == "tirol-bot"
    assert [k["id"] for k in admin("chat-key", "list", "--tenant", "Tirol")[0]] == [key["id"]]
    assert admin("lead", "list", "--chatbot", bot["id"])[0] == []


def test_a_reference_that_names_nothing_or_several_is_a_clear_error(admin):
    error, _ = admin("key", "create", "--app", "nope", ok=False)
    assert error["error"] == "app 'nope' not found"
    for name in ("One", "Two"):
        org, _ = admin("org", "create", "--name", name)
        admin("app", "create", "--org", org["id"], "--slug", "crm", "--name", "CRM")
    error, _ = admin("key", "create", "--app", "crm", ok=False)
    assert "ambiguous" in error["error"] and "--org" in error["error"]
    assert admin("key", "create", "--app", "crm", "--org", "Two")[0]["key"].startswith("wp_live_")
    error, _ = admin("chatbot", "set", "--chatbot", str(uuid.uuid4()), "--title", "x", ok=False)
    assert "not found" in error["error"]
    error, _ = admin("app", "list", "--org", "Nobody", ok=False)
    assert error["error"] == "organization 'Nobody' not found"
