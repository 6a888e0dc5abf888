"""Widget keys: `scripts/admin widget-key create --chatbot SLUG [--allowed-origin URL]...`.

A widget's key is in the page for every visitor to read: it is public by design. So it
holds only the scopes of the operations a browser calls (those the AlpineChat contract
marks `x-cors: chatbot-allowed-origins`), it is bound to one chatbot, and browsers may use
it only from that chatbot's allowed origins (CORS).
"""
from __future__ import annotations

import os

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.runtime.cors import CHATBOT_ORIGINS, CORS_EXTENSION
from handlers.runtime.specs import load_contracts
from models import alpinechat
from models.db import Database, utcnow

DEMO_KEY_NAME = "demo-widget"
DEMO_TRIGGER = {"key": "demo-welcome", "delay_s": 8,
                "message": {"de": "Suchst du eine Wanderung? Frag mich!", "en": "Looking for a hike? Ask me!",
                            "it": "Cerchi un'escursione? Chiedimi!"}}


def widget_scopes() -> list[str]:
    """The scopes of the browser-facing operations, in the contract's order of x-scopes."""
    api = load_contracts(check_fresh=False).alpinechat
    needed = {scope for operation in api.operations.values()
              if operation.source.get(CORS_EXTENSION) == CHATBOT_ORIGINS
              for scope in operation.required_scopes or ()}
    return [scope for scope in alpinechat.SCOPES if scope in needed]


def issue_widget_key(session: Session, chatbot: alpinechat.Chatbot, name: str = "widget"):
    return alpinechat.create_chat_key(session, chatbot.tenant, widget_scopes(), chatbot=chatbot, name=name)


def snippet(server_url: str, slug: str, raw_key: str) -> str:
    return (f'<script src="{server_url.rstrip("/")}/widget/alpinechat.js" data-chatbot="{slug}" '
            f'data-key="{raw_key}" async></script>')


def _allow(chatbot: alpinechat.Chatbot, origins: list[str]) -> None:
    merged = list(chatbot.allowed_origins or [])
    for origin in origins:
        normalized = alpinechat.normalize_origin(origin)
        if normalized not in merged:
            merged.append(normalized)
    chatbot.allowed_origins = merged


def cmd_create(session: Session, args):
    from scripts.admin import Output, chat_key_row
    from scripts.admin_chat import _chatbot

    chatbot = _chatbot(session, args.chatbot)
    _allow(chatbot, args.allowed_origin or [])
    key, raw = issue_widget_key(session, chatbot, args.name)
    warning = ("This key is public by design (it is in the page): it can only chat, leave leads and "
               "escalations for this chatbot, and browsers use it only from the allowed origins.")
    if not chatbot.allowed_origins:
        warning += " The chatbot allows no origin yet: add one with --allowed-origin."
    return Output({**chat_key_row(key), "key": raw, "allowed_origins": ", ".join(chatbot.allowed_origins),
                   "snippet": snippet(args.server_url, chatbot.slug, raw)}, warning=warning)


def demo_widget_key(database_url: str, origins: list[str], slug: str = "demo-bot") -> str | None:
    """For scripts/serve: revokes the demo widget keys issued before, issues one for the demo
    chatbot, lets `origins` embed it, and gives it a proactive trigger to show."""
    database = Database(database_url)
    try:
        with database.unit_of_work() as session:
            chatbot = alpinechat.get_chatbot(session, slug)
            if chatbot is None:
                return None
            earlier = session.scalars(select(alpinechat.ChatApiKey).where(
                alpinechat.ChatApiKey.chatbot_id == chatbot.id, alpinechat.ChatApiKey.name == DEMO_KEY_NAME,
                alpinechat.ChatApiKey.revoked_at.is_(None)))
            for key in earlier:
                key.revoked_at = utcnow()
            _allow(chatbot, origins)
            if not (chatbot.widget_config or {}).get("proactive"):
                alpinechat.update_widget_config(chatbot, {"proactive": [DEMO_TRIGGER]})
            _, raw = issue_widget_key(session, chatbot, DEMO_KEY_NAME)
            return raw
    finally:
        database.dispose()


def register(command, group) -> None:
    widget_key = group("widget-key", "AlpineChat keys for a browser widget (public by design)")
    sub = command(widget_key, "create", cmd_create,
                  "issue a chatbot-bound key with only the widget's scopes, and print the embed snippet")
    sub.add_argument("--chatbot", metavar="SLUG", required=True)
    sub.add_argument("--allowed-origin", action="append", metavar="URL",
                     help="repeatable; added to the chatbot's allowed origins (the pages that may embed it)")
    sub.add_argument("--name", default="widget")
    sub.add_argument("--server-url", default=os.environ.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000",
                     help="this server's public URL, for the snippet (default PUBLIC_BASE_URL)")
