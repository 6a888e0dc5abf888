"""WePeople Ingest operations (tag `Ingest`)."""
from __future__ import annotations

from models.errors import DomainError


def ping(principal: dict):
    return {
        "ok": True,
        "organizationId": principal["organization_id"],
        "app": {"id": principal["app_id"], "slug": principal["app_slug"], "name": principal["app_name"]},
    }


def ingest_events(body: dict, principal: dict, db, request_id: str):
    raise DomainError(501, "internal_error", "Not implemented yet.")


def ingest_snapshot(body: dict, principal: dict, db, request_id: str):
    raise DomainError(501, "internal_error", "Not implemented yet.")
