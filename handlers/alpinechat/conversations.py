"""AlpineChat operations tagged `Conversations` (back office reads)."""
from __future__ import annotations

from models import alpinechat, backoffice


def get_conversations(slug: str, db, principal: dict, limit: int = 20):
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    return {"data": [backoffice.conversation_dict(c) for c in backoffice.list_conversations(db, chatbot, limit)]}


def get_conversations_messages(slug: str, conversation_id: str, db, principal: dict):
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    messages = backoffice.conversation_messages(db, chatbot, conversation_id)
    return {"data": [backoffice.message_dict(m) for m in messages]}
