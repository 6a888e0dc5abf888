"""What the admin reads of ingested data: an organization's timeline and its user strip
(the latest snapshot card per worker per app)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.ingest.tables import IngestEvent, Worker, WorkerSnapshot, connection_name
from models.wepeople import App


def local_time(occurred_at: dt.datetime, offset_minutes: int) -> dt.datetime:
    return occurred_at.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))


def timeline(
    session: Session,
    organization_id: uuid.UUID,
    *,
    worker_id: uuid.UUID | None = None,
    app_id: uuid.UUID | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """An organization's timeline rows, newest first."""
    query = (
        select(IngestEvent, Worker.display_name, Worker.external_id, Worker.email)
        .join(Worker, Worker.id == IngestEvent.worker_id)
        .where(IngestEvent.organization_id == organization_id)
    )
    if worker_id is not None:
        query = query.where(IngestEvent.worker_id == worker_id)
    if app_id is not None:
        query = query.where(IngestEvent.app_id == app_id)
    if event_type is not None:
        query = query.where(IngestEvent.event_type == event_type)
    if since is not None:
        query = query.where(IngestEvent.occurred_at >= since)
    if until is not None:
        query = query.where(IngestEvent.occurred_at < until)
    query = query.order_by(IngestEvent.occurred_at.desc(), IngestEvent.id.desc()).limit(limit)
    rows = []
    for event, display_name, external_id, email in session.execute(query):
        rows.append({
            "id": event.id,
            "occurred_at": local_time(event.occurred_at, event.utc_offset_minutes).isoformat(),
            "worker_id": str(event.worker_id),
            "worker": display_name or external_id or email,
            "source": event.source,
            "kind": event.kind,
            "event_type": event.event_type,
            "category": event.category,
            "duration": event.duration,
            "metadata": event.metadata_,
        })
    return rows


def user_strip(session: Session, organization_id: uuid.UUID, app_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """The latest snapshot card per worker per app."""
    query = (
        select(WorkerSnapshot, Worker.display_name, Worker.external_id, Worker.email, App.slug)
        .join(Worker, Worker.id == WorkerSnapshot.worker_id)
        .join(App, App.id == WorkerSnapshot.app_id)
        .where(WorkerSnapshot.organization_id == organization_id)
    )
    if app_id is not None:
        query = query.where(WorkerSnapshot.app_id == app_id)
    query = query.order_by(Worker.display_name, WorkerSnapshot.worker_id, App.slug)
    cards = []
    for card, display_name, external_id, email, slug in session.execute(query):
        cards.append({
            "worker_id": str(card.worker_id),
            "worker": display_name or external_id or email,
            "source": connection_name(slug),
            "snapshot_type": card.snapshot_type,
            "occurred_at": local_time(card.occurred_at, card.utc_offset_minutes).isoformat(),
            "metrics": card.metrics,
        })
    return cards
