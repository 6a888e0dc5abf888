"""AlpineChat operations tagged `Telemetry`."""
from __future__ import annotations

from models import alpinechat, backoffice


def post_chat_telemetry_proactive(slug: str, body: dict, db):
    # Public widget beacon; stored as is, counted per trigger in the admin CLI.
    chatbot = alpinechat.require_active_chatbot(db, slug)
    backoffice.record_beacon(db, chatbot, body)
    return {"ok": True}
