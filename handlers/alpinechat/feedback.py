"""AlpineChat operations tagged `Feedback`."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext
from models import alpinechat, backoffice


def post_feedback(ctx: RequestContext, slug: str, body: dict):
    db = ctx.db
    # Public: the conversation (and message) must be this chatbot's, else 404.
    chatbot = alpinechat.require_active_chatbot(db, slug)
    feedback = backoffice.rate_message(db, chatbot, body["conversation_id"], body["rating"],
                                       message_id=body.get("message_id"), comment=body.get("comment"))
    return {"ok": True, "message_id": str(feedback.message_id), "rating": feedback.rating}
