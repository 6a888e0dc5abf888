"""Contract fuzzing: schemathesis generates requests from the published 3.1 contracts
(served by the app itself) and runs every check against every operation, in-process.

Operations whose issue has not landed yet are left out through NOT_YET_BUILT only.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

CONFIG = SchemathesisConfig.from_path(Path(__file__).with_name("schemathesis.toml"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
# CI sees the same cases every run; FUZZ_RANDOM=1 (with --hypothesis-seed=N) explores others.
DERANDOMIZE = not os.environ.get("FUZZ_RANDOM")

# "METHOD path" of operations routed to a handler that is built by a later issue.
NOT_YET_BUILT: set[str] = set()


def _load(app, url: str):
    return schemathesis.openapi.from_asgi(url, app, config=CONFIG)


@pytest.fixture(scope="module")
def fuzz_tenants(app, database):
    """Keys with the scopes each operation needs, and a chatbot whose slug is used."""
    from models import alpinechat, wepeople

    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, unique("fuzz-org"), plan="enterprise")
        ingest_app = wepeople.create_app(s, org, unique("fuzz-app"), "Fuzz App")
        _, wp_key = wepeople.create_ingest_key(s, ingest_app)
        tenant = alpinechat.create_tenant(s, unique("fuzz-tenant"), "admin@example.com")
        bot = alpinechat.create_chatbot(s, tenant, unique("fuzz-bot"), "Fuzz Bot",
                                        widget_config={"widget": {"lead_capture": True}})
        _, chat_key = alpinechat.create_chat_key(s, tenant, ["*"])
        return {"wepeople": wp_key, "alpinechat": chat_key, "slug": bot.slug}


@pytest.fixture(scope="module")
def wepeople_schema(app):
    return _load(app, "/openapi/v1.yaml")


@pytest.fixture(scope="module")
def alpinechat_schema(app):
    return _load(app, "/openapi/alpinechat.json")


def _lazy(fixture_name: str):
    # Filters must sit on the lazy schema: it re-applies its own filter set.
    lazy = schemathesis.pytest.from_fixture(fixture_name)
    return lazy.exclude(name=sorted(NOT_YET_BUILT)) if NOT_YET_BUILT else lazy


wepeople_fuzz = _lazy("wepeople_schema")
alpinechat_fuzz = _lazy("alpinechat_schema")

FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None,
                         suppress_health_check=list(HealthCheck), derandomize=DERANDOMIZE)


def _auth_headers(case, key: str) -> dict[str, str]:
    secured = case.operation.definition.raw.get("security", case.operation.schema.raw_schema.get("security"))
    if not secured or _drops_authorization(case):
        return {}
    return {"Authorization": f"Bearer {key}"}


def _drops_authorization(case) -> bool:
    """A negative case whose invalid headers lack Authorization tests a request without a
    key: adding ours would send a valid request that the checks expect to be refused."""
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    return (headers is not None and headers.mode.is_negative
            and not any(name.lower() == "authorization" for name in (case.headers or {})))


@wepeople_fuzz.parametrize()
@FUZZ_SETTINGS
def test_wepeople_contract(case, fuzz_tenants):
    # Idempotency-Key is stateful: the contract refuses a key reused for another body,
    # so every generated case gets a key of its own within the spec's 200 characters
    # (over-long keys, the negative cases, stay as generated).
    key = (case.headers or {}).get("Idempotency-Key")
    if key is not None and len(key) <= 200:
        case.headers["Idempotency-Key"] = f"{key[:167]}-{uuid.uuid4().hex}"
    case.call_and_validate(headers=_auth_headers(case, fuzz_tenants["wepeople"]))


@alpinechat_fuzz.parametrize()
@FUZZ_SETTINGS
def test_alpinechat_contract(case, fuzz_tenants):
    if "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = fuzz_tenants["slug"]
    case.call_and_validate(headers=_auth_headers(case, fuzz_tenants["alpinechat"]))
