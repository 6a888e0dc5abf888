"""AlpineChat operations tagged `Widget`."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext
from models import alpinechat


def get_widget_config(ctx: RequestContext, slug: str):
    db = ctx.db
    # Cache-Control, ETag and 304 come from the operation's x-cache-control.
    return alpinechat.public_widget_config(alpinechat.require_active_chatbot(db, slug))
