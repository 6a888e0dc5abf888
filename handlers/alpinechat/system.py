"""AlpineChat operations tagged `System`: health probe and authenticated ping."""
from __future__ import annotations

from handlers.runtime.pipeline import RequestContext, no_io
from models import health


def get_healthz(ctx: RequestContext):
    # Usually answered on the event loop (handlers/runtime/health.py); this is the same
    # bounded report for requests that reach the pipeline.
    report = health.PROBE.report(ctx.database, ctx.redis)
    return report, (200 if report["status"] == "ok" else 503)


@no_io
def get_ping(ctx: RequestContext):
    principal = ctx.principal
    return {"ok": True, "tenant": principal["tenant_id"], "scopes": principal["scopes"]}
