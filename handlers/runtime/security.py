"""Bearer authentication driven by each contract's security requirements.

connexion calls these handlers for every operation that declares `bearerAuth`, with the
scopes the operation requires; public operations (`security: []`) never reach them.
The key lookup runs in a worker thread so the event loop keeps serving streams; a key
verified in the last `AUTH_CACHE_SECONDS` is not looked up again (see `VerifiedKeys`).
"""
from __future__ import annotations

import hashlib
import time
import typing as t

import anyio
from connexion.security import NO_VALUE, AbstractSecurityHandler

from handlers.runtime.errors import ApiError
from handlers.runtime.specs import ApiSpec
from models import alpinechat, wepeople
from models.db import Database

Authenticator = t.Callable[[str, list[str]], dict]


class VerifiedKeys:
    """Keys verified in the last `ttl` seconds, with what they were verified for, per process.

    A widget's key is sent by every visitor of the site, so bursts of chat turns (and
    ingest batches) carry the same few keys: a key seen a moment ago skips the lookup and
    its hop to a worker thread (~1.5 ms of a chat turn's ~20 ms CPU). Only grants are
    kept, never refusals, so a new key works at once; a revoked or narrowed key, or an
    organization switched off, is refused by every worker within `ttl` seconds. The
    database stays the only truth; 0 turns this off."""

    def __init__(self, ttl: float, capacity: int = 4096):
        self.ttl = ttl
        self.capacity = capacity
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[float, dict]] = {}

    def get(self, token: str, scopes: tuple[str, ...]) -> dict | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get((_digest(token), scopes))
        if entry is None or entry[0] <= time.monotonic():
            return None
        return dict(entry[1])  # a copy: a request may add to its principal

    def put(self, token: str, scopes: tuple[str, ...], principal: dict) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.capacity:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) >= self.capacity:  # all fresh: the oldest go
                del self._entries[next(iter(self._entries))]
        self._entries[(_digest(token), scopes)] = (now + self.ttl, dict(principal))


def _digest(token: str) -> str:
    # Raw keys are not kept beyond their request.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_handler(authenticate: Authenticator, verified: VerifiedKeys,
                   used: t.Callable[[str], None]) -> type[AbstractSecurityHandler]:
    """`used(key_id)` is told of every accepted request (models/key_usage.py: last use)."""

    class BearerKeyHandler(AbstractSecurityHandler):
        security_definition_key = "x-bearerInfoFunc"
        environ_key = "BEARERINFO_FUNC"

        def get_fn(self, security_scheme, required_scopes):
            async def verify(request):
                scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
                token = token.strip()
                if scheme.lower() != "bearer" or not token:
                    return NO_VALUE  # connexion answers 401 "no credentials"
                scopes = tuple(required_scopes or ())
                principal = verified.get(token, scopes)
                if principal is None:
                    principal = await anyio.to_thread.run_sync(authenticate, token, list(scopes))
                    verified.put(token, scopes, principal)
                used(principal["key_id"])
                return principal

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
            raise ApiError("invalid_key", "The API key is unknown or has been revoked.")
        if not key.api_enabled:
            raise ApiError("api_disabled", "API access is disabled for this organization.")
        plan = self.plans.get(key.plan)
        if not plan or not plan.get("apiAccess"):
            raise ApiError("plan_limit", f"The {key.plan} plan does not include API access.")
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
            raise ApiError("unauthorized", "The API key is unknown or has been revoked.")
        if not alpinechat.key_grants(key, required_scopes):
            raise ApiError("unauthorized", "The API key lacks the required scope.")
        return {
            "sub": str(key.id),
            "key_id": str(key.id),
            "tenant_id": str(key.tenant_id),
            "chatbot_id": str(key.chatbot_id) if key.chatbot_id else None,
            "scopes": list(key.scopes),
        }
