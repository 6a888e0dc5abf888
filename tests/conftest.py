"""Shared fixtures: one throwaway database per test run (SQLite file by default, a fresh
PostgreSQL database when TEST_DATABASE_URL is set), Redis when TEST_REDIS_URL is set,
the app, an HTTP client, and factories for tenants and keys."""
from __future__ import annotations

import logging
import os
import types
import uuid

import pytest

from models import alpinechat, migrate, wepeople
from models.config import Settings
from models.db import Database
from scripts import databases
from tests.log_scan import SecretScanner

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None


BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])


def throwaway_postgres(prefix: str):
    """A new database on TEST_DATABASE_URL's server, dropped afterwards."""
    return databases.throwaway_postgres(TEST_DATABASE_URL, prefix)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log():
    """Every record the run logs in this process is scanned for keys and webhook secrets;
    one found fails the run (reported at its end)."""
    scanner = SecretScanner()
    logging.getLogger().addHandler(scanner)
    yield scanner
    logging.getLogger().removeHandler(scanner)
    assert not scanner.leaks, "secrets in the logs:\n" + "\n".join(scanner.leaks[:20])


@pytest.fixture(autouse=True)
def demo_keys_file(tmp_path, monkeypatch):
    """`scripts/admin demo` keeps its raw keys in a file: the test's own, never var/'s."""
    monkeypatch.setenv("DEMO_KEYS_FILE", str(tmp_path / "demo-keys.json"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """The run's shared database: a SQLite file, or PostgreSQL with TEST_DATABASE_URL."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    with throwaway_postgres("ct") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request, tmp_path):
    """An empty database per test, on each backend in use: a SQLite file in a folder
    that does not exist yet, and a throwaway PostgreSQL database with TEST_DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'test.db'}"
        return
    with throwaway_postgres("fresh") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url) -> Settings:
    migrate.upgrade(database_url)
    return Settings.from_env({}, database_url=database_url, redis_url=TEST_REDIS_URL,
                             public_base_url="http://testserver")


@pytest.fixture(scope="session")
def database(settings):
    db = Database(settings.database_url)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def app(settings, database):
    from handlers.runtime.app import create_app

    return create_app(settings, database=database)


@pytest.fixture
def client(app):
    with app.test_client() as test_client:
        yield test_client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_ingest_key(database):
    """An organization with one app and a fresh `wp_live_*` key."""

    def make(plan="growth", api_enabled=True, allowed_event_types=None):
        with database.unit_of_work() as s:
            org = wepeople.create_organization(s, unique("org"), plan=plan, api_enabled=api_enabled)
            app = wepeople.create_app(s, org, unique("app"), "Test App", allowed_event_types)
            key, raw = wepeople.create_ingest_key(s, app)
            return types.SimpleNamespace(org_id=org.id, app_id=app.id, app_slug=app.slug, key_id=key.id,
                                         key=raw, headers={"Authorization": f"Bearer {raw}"})

    return make


@pytest.fixture
def make_chatbot(database):
    """A tenant with one active chatbot and a `*` key bound to the tenant."""

    def make(scopes=("*",), **chatbot_options):
        with database.unit_of_work() as s:
            tenant = alpinechat.create_tenant(s, unique("tenant"), "admin@example.com")
            bot = alpinechat.create_chatbot(s, tenant, unique("bot"), "Test Bot", **chatbot_options)
            key, raw = alpinechat.create_chat_key(s, tenant, list(scopes))
            return types.SimpleNamespace(tenant_id=tenant.id, chatbot_id=bot.id, slug=bot.slug, key_id=key.id,
                                         key=raw, headers={"Authorization": f"Bearer {raw}"})

    return make


@pytest.fixture
def make_chat_key(database):
    def make(tenant_id, scopes, chatbot_slug=None):
        with database.unit_of_work() as s:
            tenant = alpinechat.get_tenant(s, tenant_id)
            bot = alpinechat.get_chatbot(s, chatbot_slug) if chatbot_slug else None
            key, raw = alpinechat.create_chat_key(s, tenant, list(scopes), chatbot=bot)
            return types.SimpleNamespace(key_id=key.id, key=raw, headers={"Authorization": f"Bearer {raw}"})

    return make
