"""AlpineChat operations tagged `System`: health probe and authenticated ping."""
from __future__ import annotations

from models import health


def get_healthz(db, redis):
    report = health.check(db, redis)
    return report, (200 if report["status"] == "ok" else 503)


def get_ping(principal: dict):
    return {"ok": True, "tenant": principal["tenant_id"], "scopes": principal["scopes"]}
