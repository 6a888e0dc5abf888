"""AlpineChat operations tagged `Chat`."""
from __future__ import annotations

from handlers.runtime import sse
from handlers.runtime.pipeline import RequestContext


def post_chat(ctx: RequestContext, slug: str, body: dict):
    # The spec's `x-rate-limit.on-exceeded: stream-event`: the pipeline hands over the
    # limit decision instead of a 429 (the contract documents none), and a limited turn
    # is a stream that says so.
    engine = ctx.chat_engine
    plan = engine.prepare(ctx.db, slug=slug, principal=ctx.principal, request=body, rate_limit=ctx.rate_limit)
    return sse.event_stream(ctx.scope, engine.turn(plan))
