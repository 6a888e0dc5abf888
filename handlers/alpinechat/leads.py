"""AlpineChat operations tagged `Leads`."""
from __future__ import annotations

from flask import request

from handlers.runtime.errors import RequestValidationFailed
from handlers.runtime.pipeline import RequestContext
from models import alpinechat, backoffice


def post_lead(ctx: RequestContext, slug: str, body: dict):
    db, principal = ctx.db, ctx.principal
    # 5/h per IP x chatbot comes from the operation's x-rate-limit, before we run.
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    lead = backoffice.create_lead(db, chatbot, body)
    return {"id": str(lead.id), "created_at": backoffice.lead_dict(lead)["created_at"]}, 201


def get_leads(ctx: RequestContext, slug: str, limit: int = 50):
    db, principal = ctx.db, ctx.principal
    chatbot = alpinechat.chatbot_for_principal(db, slug, principal)
    # `cursor` is not a declared parameter (the published contract has none); the
    # operation's x-pagination describes it, and undeclared query parameters reach us.
    cursor = request.args.get("cursor") or None
    try:
        leads, next_cursor = backoffice.list_leads(db, chatbot, limit=limit, cursor=cursor)
    except backoffice.CursorInvalid:
        raise RequestValidationFailed({"cursor": ["The cursor is invalid; use a next_cursor we returned."]}) from None
    return {"data": [backoffice.lead_dict(lead) for lead in leads], "next_cursor": next_cursor}
