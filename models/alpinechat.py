"""AlpineChat tenancy: tenants, their chatbots, and scoped `ac_live_*` API keys.

Conversations, messages, leads, escalations and knowledge live in their own modules.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import secrets
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, ForeignKey, Numeric, String, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, validates

from models.db import Base, CreatedAt, Slug, Str200, UUIDPk
from models.errors import DomainError
from models.keys import ALPINECHAT_KEY_PREFIX, find_active_key_row, issue_key, revoke

LANGUAGES = ("de", "en", "it")
WILDCARD_SCOPE = "*"
# components.securitySchemes.bearerAuth.x-scopes in specs/alpinechat.json.
SCOPES = (
    "chat",
    "leads.read",
    "leads.write",
    "escalations.read",
    "escalations.write",
    "conversations.read",
    WILDCARD_SCOPE,
)
DEFAULT_SESSION_MESSAGE_CAP = 30
# WidgetConfig fields kept in Chatbot.widget_config; slug, title and language are columns.
WIDGET_CONFIG_FIELDS = ("greeting", "colors", "widget", "proactive", "escalation", "features", "theme")

DEFAULT_GREETINGS = {
    "de": "Hallo! Wie kann ich dir helfen?",
    "en": "Hi! How can I help you?",
    "it": "Ciao! Come posso aiutarti?",
}


def default_widget_config(language: str = "de") -> dict[str, Any]:
    return {
        "greeting": DEFAULT_GREETINGS[language],
        "colors": {"primary": "#0f766e", "on_primary": "#ffffff"},
        "widget": {"placement": "bottom-right", "lead_capture": False},
        "proactive": [],
        "escalation": {"enabled": False},
        "features": {"page_context": {"enabled": False}},
        "theme": {
            "light": {"--ac-primary": "#0f766e", "--ac-bg": "#ffffff", "--ac-text": "#111827"},
            "dark": {"--ac-primary": "#2dd4bf", "--ac-bg": "#111827", "--ac-text": "#f9fafb"},
        },
    }


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[UUIDPk]
    name: Mapped[Str200]
    # Receives lead and escalation notifications.
    admin_email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[CreatedAt]

    chatbots: Mapped[list[Chatbot]] = relationship(back_populates="tenant")


class Chatbot(Base):
    __tablename__ = "chatbots"

    id: Mapped[UUIDPk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # Public routes address chatbots by slug alone, so it is unique across tenants.
    slug: Mapped[Slug] = mapped_column(unique=True)
    title: Mapped[Str200]
    active: Mapped[bool] = mapped_column(default=True)
    language: Mapped[str] = mapped_column(String(2), default="de")
    widget_config: Mapped[dict[str, Any]] = mapped_column(default=default_widget_config)
    # Origins (scheme://host[:port]) whose pages may embed the widget.
    allowed_origins: Mapped[list[str]] = mapped_column(default=list)
    # None uses the deployment's default model.
    model: Mapped[str | None] = mapped_column(String(100))
    # None means no monthly spending cap.
    monthly_budget_usd: Mapped[float | None] = mapped_column(Numeric(12, 2, asdecimal=False))
    session_message_cap: Mapped[int] = mapped_column(default=DEFAULT_SESSION_MESSAGE_CAP)
    blocklist: Mapped[list[str]] = mapped_column(default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    # Standard Webhooks signing secret; kept readable because we sign with it.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[CreatedAt]

    tenant: Mapped[Tenant] = relationship(back_populates="chatbots")

    @validates("language")
    def _check_language(self, _key, language: str) -> str:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
        return language

    @validates("allowed_origins")
    def _normalize_origins(self, _key, origins: Iterable[str]) -> list[str]:
        return [normalize_origin(origin) for origin in origins]


class ChatApiKey(Base):
    __tablename__ = "chat_api_keys"

    id: Mapped[UUIDPk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # None: the key works for every chatbot of its tenant.
    chatbot_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chatbots.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[Str200]
    scopes: Mapped[list[str]]
    created_at: Mapped[CreatedAt]
    # Written by models/key_usage.py, at most once a minute.
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    chatbot: Mapped[Chatbot | None] = relationship()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def normalize_origin(origin: str) -> str:
    """`https://Example.com/` -> `https://example.com`; anything but a bare origin is refused."""
    parts = urlsplit(origin.strip())
    bare = parts.path in ("", "/") and not parts.query and not parts.fragment
    if parts.scheme not in ("http", "https") or not parts.netloc or not bare:
        raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def update_widget_config(chatbot: Chatbot, changes: dict[str, Any]) -> None:
    """Deep-merges `changes` (nested dicts merge, other values replace) into the config."""
    unknown = set(changes) - set(WIDGET_CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"not widget config fields: {', '.join(sorted(unknown))}")
    # A new dict, because in-place changes to a JSON column are not detected.
    chatbot.widget_config = _deep_merge(chatbot.widget_config or {}, changes)


def public_widget_config(chatbot: Chatbot) -> dict[str, Any]:
    """The WidgetConfig served without authentication: display fields only, no secrets."""
    config = copy.deepcopy(chatbot.widget_config or {})
    return {
        "slug": chatbot.slug,
        "title": chatbot.title,
        "language": chatbot.language,
        **{field: config[field] for field in WIDGET_CONFIG_FIELDS if field in config},
    }


def ensure_webhook_secret(chatbot: Chatbot) -> str:
    if chatbot.webhook_secret is None:
        chatbot.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return chatbot.webhook_secret


def create_tenant(session: Session, name: str, admin_email: str) -> Tenant:
    tenant = Tenant(name=name, admin_email=admin_email)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def create_chatbot(
    session: Session,
    tenant: Tenant,
    slug: str,
    title: str,
    *,
    language: str = "de",
    active: bool = True,
    allowed_origins: Iterable[str] = (),
    model: str | None = None,
    monthly_budget_usd: float | None = None,
    session_message_cap: int = DEFAULT_SESSION_MESSAGE_CAP,
    widget_config: dict[str, Any] | None = None,
) -> Chatbot:
    """`widget_config` is merged over the defaults for `language`, so it may be partial."""
    chatbot = Chatbot(
        tenant_id=tenant.id,
        slug=slug,
        title=title,
        language=language,
        active=active,
        allowed_origins=list(allowed_origins),
        model=model,
        monthly_budget_usd=monthly_budget_usd,
        session_message_cap=session_message_cap,
    )
    # After construction, which has validated the language.
    chatbot.widget_config = default_widget_config(language)
    update_widget_config(chatbot, widget_config or {})
    session.add(chatbot)
    session.flush()
    return chatbot


def get_chatbot(session: Session, slug: str) -> Chatbot | None:
    return session.scalar(select(Chatbot).where(Chatbot.slug == slug))


def get_active_chatbot(session: Session, slug: str) -> Chatbot | None:
    return session.scalar(select(Chatbot).where(Chatbot.slug == slug, Chatbot.active.is_(True)))


def list_chatbots(session: Session, tenant_id: uuid.UUID | None = None) -> list[Chatbot]:
    query = select(Chatbot).order_by(Chatbot.created_at)
    if tenant_id is not None:
        query = query.where(Chatbot.tenant_id == tenant_id)
    return list(session.scalars(query))


def create_chat_key(
    session: Session,
    tenant: Tenant,
    scopes: Iterable[str],
    chatbot: Chatbot | None = None,
    name: str = "default",
) -> tuple[ChatApiKey, str]:
    """Returns the stored key and the raw `ac_live_*` token, which is not kept anywhere."""
    scopes = list(dict.fromkeys(scopes))
    unknown = set(scopes) - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
    if chatbot is not None and chatbot.tenant_id != tenant.id:
        raise ValueError(f"chatbot {chatbot.slug!r} belongs to another tenant")
    issued = issue_key(ALPINECHAT_KEY_PREFIX)
    key = ChatApiKey(
        tenant_id=tenant.id,
        chatbot=chatbot,
        key_hash=issued.key_hash,
        prefix=issued.prefix,
        last4=issued.last4,
        name=name,
        scopes=scopes,
    )
    session.add(key)
    session.flush()
    return key, issued.raw


# What a request's principal needs, as one prebuilt statement: every chat turn and
# back-office call authenticates, and an ORM entity cost more than the query.
_CHAT_PRINCIPAL = select(
    ChatApiKey.id, ChatApiKey.key_hash, ChatApiKey.revoked_at, ChatApiKey.tenant_id, ChatApiKey.chatbot_id,
    ChatApiKey.scopes,
).where(ChatApiKey.key_hash == bindparam("key_hash"))


def find_active_chat_key(session: Session | Connection, raw_key: str):
    """The active key's row (id, tenant_id, chatbot_id, scopes), or None."""
    return find_active_key_row(session, _CHAT_PRINCIPAL, raw_key, ALPINECHAT_KEY_PREFIX)


def revoke_chat_key(session: Session, key_id: uuid.UUID) -> ChatApiKey | None:
    """Revokes the key (idempotently: the first revocation time is kept); None if unknown."""
    return revoke(session.get(ChatApiKey, key_id))


def list_chat_keys(session: Session, tenant_id: uuid.UUID | None = None) -> list[ChatApiKey]:
    query = select(ChatApiKey).order_by(ChatApiKey.created_at)
    if tenant_id is not None:
        query = query.where(ChatApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def key_grants(key: ChatApiKey, required_scopes: str | Iterable[str]) -> bool:
    if isinstance(required_scopes, str):
        required_scopes = (required_scopes,)
    granted = set(key.scopes or ())
    return WILDCARD_SCOPE in granted or set(required_scopes) <= granted


def key_can_access_chatbot(tenant_id: uuid.UUID | str, bound_chatbot_id: uuid.UUID | str | None, chatbot) -> bool:
    """The one rule of "may this key use this chatbot": a key of the chatbot's tenant,
    bound to no chatbot or to this one. Ids as UUIDs (a key row) or text (a principal)."""
    return str(tenant_id) == str(chatbot.tenant_id) and (
        bound_chatbot_id is None or str(bound_chatbot_id) == str(chatbot.id))


def require_active_chatbot(session: Session, slug: str) -> Chatbot:
    """The active chatbot of `slug`; 404 `not_found` for an unknown or inactive one."""
    chatbot = get_active_chatbot(session, slug)
    if chatbot is None:
        raise DomainError("not_found", f"No active chatbot {slug!r}.")
    return chatbot


def chatbot_for_principal(session: Session, slug: str, principal: dict) -> Chatbot:
    """The active chatbot of `slug`, if the authenticated key may use it: 404 for an
    unknown or inactive slug, 403 for a key of another tenant (or bound to another bot)."""
    return _check_principal(require_active_chatbot(session, slug), principal)


_CHATBOTS = Chatbot.__table__
# What a chat turn reads of its chatbot, as one plain row (no ORM instance: it is read on
# every turn and never changed by one).
_TURN_CHATBOT = select(*(_CHATBOTS.c[name] for name in (
    "id", "tenant_id", "title", "language", "widget_config", "model", "monthly_budget_usd",
    "session_message_cap", "blocklist"))).where(_CHATBOTS.c.slug == bindparam("slug"), _CHATBOTS.c.active.is_(True))


def chatbot_row_for_principal(session: Session, slug: str, principal: dict):
    """As `chatbot_for_principal`, as a read-only row of the columns a chat turn uses."""
    chatbot = session.connection().execute(_TURN_CHATBOT, {"slug": slug}).first()
    if chatbot is None:
        raise DomainError("not_found", f"No active chatbot {slug!r}.")
    return _check_principal(chatbot, principal)


def _check_principal(chatbot, principal: dict):
    if not key_can_access_chatbot(principal["tenant_id"], principal.get("chatbot_id"), chatbot):
        raise DomainError("forbidden", "The API key belongs to another chatbot's tenant.")
    return chatbot
