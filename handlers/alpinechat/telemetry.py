"""AlpineChat operations tagged `Telemetry`."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext
from models import alpinechat, backoffice


def post_chat_telemetry_proactive(ctx: RequestContext, slug: str, body: dict):
    db = ctx.db
    # Public widget beacon; stored as is, counted per trigger in the admin CLI.
    chatbot = alpinechat.require_active_chatbot(db, slug)
    backoffice.record_beacon(db, chatbot, body)
    return {"ok": True}
