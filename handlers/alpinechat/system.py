"""AlpineChat operations tagged `System`: health probe and authenticated ping."""
from __future__ import annotations

from flask import current_app

from models import health


def get_healthz(redis):
    # Usually answered on the event loop (handlers/runtime/health.py); this is the same
    # bounded report for requests that reach Flask.
    report = health.PROBE.report(current_app.extensions["runtime"].database, redis)
    return report, (200 if report["status"] == "ok" else 503)


def get_ping(principal: dict):
    return {"ok": True, "tenant": principal["tenant_id"], "scopes": principal["scopes"]}
