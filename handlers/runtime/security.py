"""Bearer authentication driven by each contract's security requirements.

connexion calls these handlers for every operation that declares `bearerAuth`, with the
scopes the operation requires; public operations (`security: []`) never reach them.
The key lookup runs in a worker thread so the event loop keeps serving streams.
"""
from __future__ import annotations

import typing as t

import anyio
from connexion.security import NO_VALUE, AbstractSecurityHandler

from handlers.runtime.errors import ApiError
from handlers.runtime.specs import ApiSpec
from models import alpinechat, wepeople
from models.db import Database

Authenticator = t.Callable[[str, list[str]], dict]


def bearer_handler(authenticate: Authenticator) -> type[AbstractSecurityHandler]:
    class BearerKeyHandler(AbstractSecurityHandler):
        security_definition_key = "x-bearerInfoFunc"
        environ_key = "BEARERINFO_FUNC"

        def get_fn(self, security_scheme, required_scopes):
            async def verify(request):
                scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
                token = token.strip()
                if scheme.lower() != "bearer" or not token:
                    return NO_VALUE  # connexion answers 401 "no credentials"
                return await anyio.to_thread.run_sync(authenticate, token, list(required_scopes or []))

            return verify

    return BearerKeyHandler


class WePeopleAuth:
    """`wp_live_*` keys: one per app of an organization; plan and switch gate access."""

    def __init__(self, database: Database, api: ApiSpec):
        self.database = database
        self.plans: dict = api.source["x-limits"]["plans"]

    def __call__(self, token: str, required_scopes: list[str]) -> dict:
        # A plain autocommit connection, not a Session: one read needs no unit of work.
        with self.database.reader.connect() as connection:
            key = wepeople.find_ingest_principal(connection, token)
        if key is None:
            raise ApiError(401, "invalid_key", "The API key is unknown or has been revoked.")
        if not key.api_enabled:
            raise ApiError(402, "api_disabled", "API access is disabled for this organization.")
        plan = self.plans.get(key.plan)
        if not plan or not plan.get("apiAccess"):
            raise ApiError(402, "plan_limit", f"The {key.plan} plan does not include API access.")
        return {
            "sub": str(key.id),
            "key_id": str(key.id),
            "organization_id": str(key.organization_id),
            "app_id": str(key.app_id),
            "app_slug": key.app_slug,
            "app_name": key.app_name,
            "plan": key.plan,
        }


class AlpineChatAuth:
    """Tenant keys with scopes; `*` grants every scope."""

    def __init__(self, database: Database):
        self.database = database

    def __call__(self, token: str, required_scopes: list[str]) -> dict:
        with self.database.reader.connect() as connection:  # one read: no Session needed
            key = alpinechat.find_active_chat_key(connection, token)
        if key is None:
            raise ApiError(401, "unauthorized", "The API key is unknown or has been revoked.")
        if not alpinechat.key_grants(key, required_scopes):
            raise ApiError(401, "unauthorized", "The API key lacks the required scope.")
        return {
            "sub": str(key.id),
            "key_id": str(key.id),
            "tenant_id": str(key.tenant_id),
            "chatbot_id": str(key.chatbot_id) if key.chatbot_id else None,
            "scopes": list(key.scopes),
        }
