"""AlpineChat operations tagged `Chat`."""
from __future__ import annotations

from handlers.runtime import sse


def post_chat(slug: str, body: dict, db, principal, rate_limit=None):
    # The runtime hands over the rate-limit decision instead of a 429: the contract
    # documents none, so a limited turn is a stream that says so.
    engine = sse.chat_engine()
    plan = engine.prepare(db, slug=slug, principal=principal, request=body, rate_limit=rate_limit)
    return sse.event_stream(engine.turn(plan))
