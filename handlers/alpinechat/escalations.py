"""AlpineChat operations tagged `Escalations`."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext
from handlers.runtime.specs import ApiSpec
from models import alpinechat, backoffice


def _confirmation(contract: ApiSpec, language: str) -> str:
    """EscalationResponse.message's x-localized text in the chatbot's language."""
    message = contract.schema("EscalationResponse")["properties"]["message"]
    localized = message.get("x-localized", {})
    return localized.get(language) or message.get("example", "")


def post_escalate(ctx: RequestContext, slug: str, body: dict):
    db, principal, contract = ctx.db, ctx.principal, ctx.contract
    # 3/h per IP x chatbot comes from the operation's x-rate-limit, before we run.
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    escalation = backoffice.create_escalation(db, chatbot, body)
    return {"id": str(escalation.id), "status": escalation.status,
            "message": _confirmation(contract, chatbot.language)}, 201


def get_escalations(ctx: RequestContext, slug: str, status: str | None = None, limit: int = 50):
    db, principal = ctx.db, ctx.principal
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    escalations = backoffice.list_escalations(db, chatbot, status=status, limit=limit)
    return {"data": [backoffice.escalation_dict(e) for e in escalations]}
