"""Tenancy models and key handling of both APIs, on SQLite and (if configured) PostgreSQL."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import alpinechat, keys, wepeople
from models.db import Database
from models.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(fresh_database_url):
    upgrade(fresh_database_url)
    database = Database(fresh_database_url)
    yield database
    database.dispose()


@pytest.fixture
def session(db):
    with db.unit_of_work() as session:
        yield session


def _column_values(row) -> list:
    return [getattr(row, column.key) for column in row.__table__.columns]


# ── keys ─────────────────────────────────────────────────────────────────────


def test_generated_keys_carry_prefix_and_256_random_bits():
    first, second = keys.generate_key("wp_live_"), keys.generate_key("wp_live_")
    assert first.startswith("wp_live_") and first != second
    assert len(first) - len("wp_live_") >= 43  # token_urlsafe(32)


def test_hash_is_sha256_hex():
    assert keys.hash_key("ac_live_x") == hashlib.sha256(b"ac_live_x").hexdigest()


def test_keys_match_compares_in_constant_time(monkeypatch):
    calls = []
    real = keys.hmac.compare_digest
    monkeypatch.setattr(keys.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    stored = keys.hash_key("wp_live_secret")
    assert keys.keys_match("wp_live_secret", stored)
    assert not keys.keys_match("wp_live_other", stored)
    assert len(calls) == 2


def test_issued_key_display_parts_are_not_the_secret():
    issued = keys.issue_key("ac_live_")
    assert issued.prefix == issued.raw[:12] and issued.last4 == issued.raw[-4:]
    assert keys.masked(issued.prefix, issued.last4) == f"{issued.raw[:12]}…{issued.raw[-4:]}"


# ── WePeople ─────────────────────────────────────────────────────────────────


def test_plans_match_the_spec():
    spec = yaml.safe_load((ROOT / "specs" / "wepeople-ingest.yaml").read_text())
    assert tuple(spec["x-limits"]["plans"]) == wepeople.PLANS


def test_unknown_plan_is_refused(session):
    with pytest.raises(ValueError):
        wepeople.create_organization(session, "Acme", plan="platinum")


def test_only_the_hash_of_an_ingest_key_is_stored(db):
    with db.unit_of_work() as session:
        org = wepeople.create_organization(session, "Acme")
        app = wepeople.create_app(session, org, "crm", "CRM")
        key, raw = wepeople.create_ingest_key(session, app, name="ci")
    with db.unit_of_work() as session:
        stored = session.get(wepeople.IngestApiKey, key.id)
        assert raw.startswith(keys.WEPEOPLE_KEY_PREFIX)
        assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert raw not in [str(value) for value in _column_values(stored)]
        assert stored.organization.name == "Acme" and stored.prefix == raw[:12]


def test_find_ingest_principal(session, monkeypatch):
    org = wepeople.create_organization(session, "Acme")
    app = wepeople.create_app(session, org, "crm", "CRM")
    key, raw = wepeople.create_ingest_key(session, app)
    compared = []
    real = keys.keys_match
    monkeypatch.setattr(keys, "keys_match", lambda r, h: compared.append(r) or real(r, h))

    assert wepeople.find_ingest_principal(session, raw).id == key.id
    assert compared == [raw]
    assert wepeople.find_ingest_principal(session, raw + "x") is None
    assert wepeople.find_ingest_principal(session, "") is None
    assert wepeople.find_ingest_principal(session, raw.replace("wp_live_", "ac_live_")) is None


def test_revoked_ingest_key_is_not_found(session):
    org = wepeople.create_organization(session, "Acme")
    app = wepeople.create_app(session, org, "crm", "CRM")
    key, raw = wepeople.create_ingest_key(session, app)
    revoked_at = wepeople.revoke_ingest_key(session, key.id).revoked_at
    assert revoked_at is not None
    assert wepeople.find_ingest_principal(session, raw) is None
    # Revoking again keeps the first revocation time.
    assert wepeople.revoke_ingest_key(session, key.id).revoked_at == revoked_at
    assert wepeople.revoke_ingest_key(session, uuid.uuid4()) is None


def test_app_slugs_are_unique_per_organization(db):
    with db.unit_of_work() as session:
        acme = wepeople.create_organization(session, "Acme")
        other = wepeople.create_organization(session, "Other")
        wepeople.create_app(session, acme, "crm", "CRM")
        wepeople.create_app(session, other, "crm", "CRM")
    with pytest.raises(IntegrityError):
        with db.unit_of_work() as session:
            wepeople.create_app(session, session.get(wepeople.Organization, acme.id), "crm", "Again")


def test_allowed_event_types(db):
    with db.unit_of_work() as session:
        org = wepeople.create_organization(session, "Acme")
        open_app = wepeople.create_app(session, org, "all", "All")
        narrow_app = wepeople.create_app(session, org, "narrow", "Narrow", ["ticket.resolved"])
    with db.unit_of_work() as session:
        open_app = session.get(wepeople.App, open_app.id)
        narrow_app = session.get(wepeople.App, narrow_app.id)
        assert open_app.allowed_event_types is None  # every event type
        assert narrow_app.allowed_event_types == ["ticket.resolved"]
        assert [app.slug for app in wepeople.list_apps(session, org.id)] == ["all", "narrow"]


def test_timestamps_come_back_aware_utc(db):
    used = dt.datetime(2026, 4, 19, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with db.unit_of_work() as session:
        app = wepeople.create_app(session, wepeople.create_organization(session, "Acme"), "crm", "CRM")
        key, _ = wepeople.create_ingest_key(session, app)
        key.last_used_at = used
    with db.unit_of_work() as session:
        stored = session.get(wepeople.IngestApiKey, key.id)
        assert stored.last_used_at == used and stored.last_used_at.tzinfo == dt.UTC
        assert stored.created_at.tzinfo == dt.UTC


# ── AlpineChat ───────────────────────────────────────────────────────────────


def _alpinechat_spec() -> dict:
    return json.loads((ROOT / "specs" / "alpinechat.json").read_text())


def _tenant_with_bots(session, name="Tirol Tourism"):
    tenant = alpinechat.create_tenant(session, name, "admin@example.com")
    slug = name.lower().replace(" ", "-")
    bot_a = alpinechat.create_chatbot(session, tenant, f"{slug}-a", "A")
    bot_b = alpinechat.create_chatbot(session, tenant, f"{slug}-b", "B")
    return tenant, bot_a, bot_b


def test_scopes_match_the_spec():
    scheme = _alpinechat_spec()["components"]["securitySchemes"]["bearerAuth"]
    assert tuple(scheme["x-scopes"]) == alpinechat.SCOPES
    assert scheme["x-wildcard-scope"] == alpinechat.WILDCARD_SCOPE


def test_only_the_hash_of_a_chat_key_is_stored_and_revocation_hides_it(db):
    with db.unit_of_work() as session:
        tenant, _, _ = _tenant_with_bots(session)
        key, raw = alpinechat.create_chat_key(session, tenant, ["chat"])
    with db.unit_of_work() as session:
        stored = alpinechat.find_active_chat_key(session, raw)
        assert stored.id == key.id and stored.scopes == ["chat"]
        assert stored.key_hash == keys.hash_key(raw)
        assert raw not in [str(value) for value in _column_values(session.get(alpinechat.ChatApiKey, stored.id))]
        assert alpinechat.find_active_chat_key(session, raw[:-1]) is None
        alpinechat.revoke_chat_key(session, key.id)
    with db.unit_of_work() as session:
        assert alpinechat.find_active_chat_key(session, raw) is None


def test_find_active_chat_key_compares_in_constant_time(session, monkeypatch):
    tenant, _, _ = _tenant_with_bots(session)
    _, raw = alpinechat.create_chat_key(session, tenant, ["*"])
    compared = []
    real = keys.keys_match
    monkeypatch.setattr(keys, "keys_match", lambda r, h: compared.append(r) or real(r, h))
    assert alpinechat.find_active_chat_key(session, raw) is not None
    assert compared == [raw]


@pytest.mark.parametrize("scopes", [[], ["chat", "admin"], ["leads"]])
def test_unknown_or_missing_scopes_are_refused(session, scopes):
    tenant, _, _ = _tenant_with_bots(session)
    with pytest.raises(ValueError):
        alpinechat.create_chat_key(session, tenant, scopes)


@pytest.mark.parametrize(
    ("granted", "required", "allowed"),
    [
        (["chat"], ["chat"], True),
        (["chat"], "chat", True),
        (["chat"], ["leads.read"], False),
        (["leads.read", "leads.write"], ["leads.read", "leads.write"], True),
        (["leads.read"], ["leads.read", "leads.write"], False),
        (["*"], ["escalations.write"], True),
        (["*"], ["chat", "conversations.read"], True),
        (["leads.write"], [], True),
    ],
)
def test_key_grants(granted, required, allowed):
    assert alpinechat.key_grants(alpinechat.ChatApiKey(scopes=granted), required) is allowed


def test_chatbot_access_rules(session):
    tenant, bot_a, bot_b = _tenant_with_bots(session)
    _, foreign_bot, _ = _tenant_with_bots(session, "Other Tenant")
    tenant_wide, _ = alpinechat.create_chat_key(session, tenant, ["chat"])
    bound, _ = alpinechat.create_chat_key(session, tenant, ["chat"], chatbot=bot_a)

    assert alpinechat.key_can_access_chatbot(tenant_wide.tenant_id, tenant_wide.chatbot_id, bot_a)
    assert alpinechat.key_can_access_chatbot(tenant_wide.tenant_id, tenant_wide.chatbot_id, bot_b)
    assert not alpinechat.key_can_access_chatbot(tenant_wide.tenant_id, tenant_wide.chatbot_id, foreign_bot)
    assert alpinechat.key_can_access_chatbot(bound.tenant_id, bound.chatbot_id, bot_a)
    assert not alpinechat.key_can_access_chatbot(bound.tenant_id, bound.chatbot_id, bot_b)
    assert not alpinechat.key_can_access_chatbot(bound.tenant_id, bound.chatbot_id, foreign_bot)


def test_a_key_cannot_be_bound_to_another_tenants_chatbot(session):
    tenant, _, _ = _tenant_with_bots(session)
    _, foreign_bot, _ = _tenant_with_bots(session, "Other Tenant")
    with pytest.raises(ValueError):
        alpinechat.create_chat_key(session, tenant, ["chat"], chatbot=foreign_bot)


def test_chatbot_slugs_are_globally_unique(db):
    with db.unit_of_work() as session:
        _tenant_with_bots(session)
    with pytest.raises(IntegrityError):
        with db.unit_of_work() as session:
            other = alpinechat.create_tenant(session, "Other", "other@example.com")
            alpinechat.create_chatbot(session, other, "tirol-tourism-a", "Copy")


def test_inactive_chatbots_are_not_served(session):
    _tenant, bot_a, _ = _tenant_with_bots(session)
    assert alpinechat.get_active_chatbot(session, bot_a.slug) is bot_a
    bot_a.active = False
    session.flush()
    assert alpinechat.get_active_chatbot(session, bot_a.slug) is None
    assert alpinechat.get_chatbot(session, bot_a.slug) is bot_a
    assert alpinechat.get_active_chatbot(session, "missing") is None


def test_public_widget_config_is_the_spec_shape_without_secrets(db):
    with db.unit_of_work() as session:
        tenant = alpinechat.create_tenant(session, "Tirol", "admin@example.com")
        chatbot = alpinechat.create_chatbot(
            session,
            tenant,
            "tirol-bot",
            "Tirol",
            language="en",
            allowed_origins=["https://secret-origin.example"],
            model="secret-model-name",
            monthly_budget_usd=123.45,
            widget_config={"widget": {"lead_capture": True}, "proactive": [{"delay_s": 5}]},
        )
        chatbot.blocklist = ["secret-blocked-word"]
        chatbot.webhook_url = "https://hooks.example/secret-path"
        secret = alpinechat.ensure_webhook_secret(chatbot)
    with db.unit_of_work() as session:
        config = alpinechat.public_widget_config(alpinechat.get_active_chatbot(session, "tirol-bot"))

    schema = _alpinechat_spec()["components"]["schemas"]["WidgetConfig"]
    assert set(config) == set(schema["properties"])
    jsonschema.validate(config, schema)
    assert config["language"] == "en" and config["greeting"] == alpinechat.DEFAULT_GREETINGS["en"]
    assert config["widget"] == {"placement": "bottom-right", "lead_capture": True}
    assert config["proactive"] == [{"delay_s": 5}]
    serialized = json.dumps(config)
    leaks = (secret, "secret-origin", "secret-model-name", "123.45", "secret-blocked-word", "secret-path")
    assert [leak for leak in leaks if leak in serialized] == []


def test_public_widget_config_is_a_copy(session):
    _, bot_a, _ = _tenant_with_bots(session)
    alpinechat.public_widget_config(bot_a)["widget"]["lead_capture"] = True
    assert bot_a.widget_config["widget"]["lead_capture"] is False


def test_update_widget_config_merges_and_rejects_unknown_fields(session):
    _, bot_a, _ = _tenant_with_bots(session)
    alpinechat.update_widget_config(bot_a, {"features": {"page_context": {"enabled": True}}})
    assert bot_a.widget_config["features"]["page_context"]["enabled"] is True
    assert bot_a.widget_config["widget"]["placement"] == "bottom-right"
    with pytest.raises(ValueError):
        alpinechat.update_widget_config(bot_a, {"webhook_secret": "x"})


def test_unknown_language_is_refused(session):
    tenant = alpinechat.create_tenant(session, "T", "t@example.com")
    with pytest.raises(ValueError):
        alpinechat.create_chatbot(session, tenant, "fr-bot", "FR", language="fr")


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [("https://Example.com", "https://example.com"), ("http://localhost:8000/", "http://localhost:8000")],
)
def test_origins_are_normalized(origin, normalized):
    assert alpinechat.normalize_origin(origin) == normalized


@pytest.mark.parametrize(
    "origin", ["example.com", "ftp://example.com", "https://example.com/page", "https://x.com?a=1"]
)
def test_non_origins_are_refused(origin):
    with pytest.raises(ValueError):
        alpinechat.normalize_origin(origin)


def test_webhook_secret_is_generated_once(session):
    _, bot_a, _ = _tenant_with_bots(session)
    assert bot_a.webhook_secret is None
    secret = alpinechat.ensure_webhook_secret(bot_a)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[len("whsec_"):])) == 32
    assert alpinechat.ensure_webhook_secret(bot_a) == secret


def test_list_functions_filter_by_owner(session):
    tenant, _, _ = _tenant_with_bots(session)
    other, _, _ = _tenant_with_bots(session, "Other Tenant")
    alpinechat.create_chat_key(session, other, ["chat"])
    assert {bot.slug for bot in alpinechat.list_chatbots(session, tenant.id)} == {
        "tirol-tourism-a",
        "tirol-tourism-b",
    }
    assert len(alpinechat.list_chatbots(session)) == 4
    assert alpinechat.list_chat_keys(session, tenant.id) == []
    assert [t.name for t in alpinechat.list_tenants(session)] == ["Tirol Tourism", "Other Tenant"]
    assert session.scalars(select(alpinechat.ChatApiKey.tenant_id)).all() == [other.id]
