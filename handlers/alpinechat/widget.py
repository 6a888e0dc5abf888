"""AlpineChat operations tagged `Widget`."""
from __future__ import annotations

from models import alpinechat


def get_widget_config(slug: str, db):
    # Cache-Control, ETag and 304 come from the operation's x-cache-control.
    return alpinechat.public_widget_config(alpinechat.require_active_chatbot(db, slug))
