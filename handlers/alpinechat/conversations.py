"""AlpineChat operations tagged `Conversations` (back office reads)."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext
from models import alpinechat, backoffice


def get_conversations(ctx: RequestContext, slug: str, limit: int = 20):
    db, principal = ctx.db, ctx.principal
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    return {"data": [backoffice.conversation_dict(c) for c in backoffice.list_conversations(db, chatbot, limit)]}


def get_conversations_messages(ctx: RequestContext, slug: str, conversation_id: str):
    db, principal = ctx.db, ctx.principal
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    messages = backoffice.conversation_messages(db, chatbot, conversation_id)
    return {"data": [backoffice.message_dict(m) for m in messages]}
