"""AlpineChat operations tagged `Escalations`."""
from __future__ import annotations

from handlers.runtime.specs import ApiSpec
from models import alpinechat, backoffice


def _confirmation(contract: ApiSpec, language: str) -> str:
    """EscalationResponse.message's x-localized text in the chatbot's language."""
    message = contract.schema("EscalationResponse")["properties"]["message"]
    localized = message.get("x-localized", {})
    return localized.get(language) or message.get("example", "")


def post_escalate(slug: str, body: dict, db, principal: dict, contract: ApiSpec):
    # 3/h per IP x chatbot comes from the operation's x-rate-limit, before we run.
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    escalation = backoffice.create_escalation(db, chatbot, body)
    return {"id": str(escalation.id), "status": escalation.status,
            "message": _confirmation(contract, chatbot.language)}, 201


def get_escalations(slug: str, db, principal: dict, status: str | None = None, limit: int = 50):
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    escalations = backoffice.list_escalations(db, chatbot, status=status, limit=limit)
    return {"data": [backoffice.escalation_dict(e) for e in escalations]}
