"""The ingest service: a batch of events, or one snapshot, accepted or rejected and
persisted in the caller's transaction.

The insert path is written for throughput: one query resolves every actor of a batch,
missing workers are created with one conflict-tolerant INSERT, and the accepted events
go to PostgreSQL with COPY (SQLite: one executemany).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from models.db import Prepared, upsert_insert, utcnow
from models.errors import DomainError
from models.ingest.actors import ActorRef, WorkerDirectory, actor_ref
from models.ingest.encoding import copy_timestamp, echoed_now, has_nul, metadata_text, parse_timestamp, to_json
from models.ingest.quota import charge, current_month, quota_exceeded, remaining_quota
from models.ingest.rules import BatchResult, IngestRules, Rejection
from models.ingest.tables import (
    EVENT,
    SNAPSHOT,
    IngestConnection,
    IngestUsage,
    WorkerSnapshot,
    connection_name,
    insert_ignore,
)
from models.ingest.writer import EventWriter, copy_rows
from models.wepeople import App

# ── The app, its connection, this month's usage ──────────────────────────────


def load_app(session: Session, app_id: uuid.UUID) -> App:
    app = session.get(App, app_id)
    if app is None:  # the key was valid a moment ago; the app is being deleted
        raise DomainError("invalid_key", "The API key's app no longer exists.")
    return app


# The hot path's statements are built once: constructing and cache-keying a fresh
# select() cost more CPU than running it.
_APPS, _CONNECTIONS, _USAGE = App.__table__.c, IngestConnection.__table__.c, IngestUsage.__table__.c
_BATCH_CONTEXT = Prepared(
    select(_APPS.id, _APPS.organization_id, _APPS.slug, _APPS.allowed_event_types,
           _CONNECTIONS.id.label("connection_id"), _USAGE.events.label("used"))
    .select_from(App.__table__)
    .outerjoin(IngestConnection.__table__, _CONNECTIONS.app_id == _APPS.id)
    .outerjoin(IngestUsage.__table__, and_(_USAGE.organization_id == _APPS.organization_id,
                                           _USAGE.month == bindparam("month")))
    .where(_APPS.id == bindparam("app_id"))
)


@dataclasses.dataclass(frozen=True)
class BatchContext:
    app_id: uuid.UUID
    organization_id: uuid.UUID
    slug: str
    allowed_event_types: list[str] | None
    connection_id: uuid.UUID
    used_this_month: int


def batch_context(session: Session, app_id: uuid.UUID, month: str) -> BatchContext:
    """The key's app, its `custom:<slug>` connection (created on first use) and the
    organization's usage this month, in one query."""
    rows = _BATCH_CONTEXT.rows(session, {"app_id": app_id, "month": month})
    row = rows[0] if rows else None
    if row is None:  # the key was valid a moment ago; the app is being deleted
        raise DomainError("invalid_key", "The API key's app no longer exists.")
    return BatchContext(row.id, row.organization_id, row.slug, row.allowed_event_types,
                        row.connection_id or ensure_connection(session, row), row.used or 0)


def ensure_connection(session: Session, app: App) -> uuid.UUID:
    found = session.scalar(select(IngestConnection.id).where(IngestConnection.app_id == app.id))
    if found is not None:
        return found
    insert_ignore(session, IngestConnection, [{
        "id": uuid.uuid4(), "organization_id": app.organization_id, "app_id": app.id,
        "name": connection_name(app.slug), "created_at": utcnow(),
    }], ["app_id"])
    return session.scalar(select(IngestConnection.id).where(IngestConnection.app_id == app.id))


def write_events(writer: EventWriter) -> None:
    """Writes the batch's accepted rows (a seam: tests fail here, after the rows went out)."""
    writer.flush()


# ── Events and snapshots ─────────────────────────────────────────────────────


def ingest_events(
    session: Session,
    *,
    principal: dict,
    events: Sequence[dict],
    rejected: list[Rejection],
    rules: IngestRules,
    request_id: str,
    now: dt.datetime | None = None,
) -> BatchResult:
    """Accepts or rejects each schema-valid event of a batch (`rejected` holds those that
    failed the schema already, by index) and persists the accepted ones atomically."""
    now = now or utcnow()
    app = batch_context(session, uuid.UUID(principal["app_id"]), current_month(now))
    organization_id, connection_id = app.organization_id, app.connection_id
    quota = rules.monthly_events.get(principal["plan"])
    if quota is not None and app.used_this_month >= quota:
        raise quota_exceeded(quota, now)

    postgres = session.get_bind().dialect.name == "postgresql"
    failed = {r.index for r in rejected}
    allowed = None if app.allowed_event_types is None else set(app.allowed_event_types)
    max_meta = rules.metadata_max_bytes
    now_text, now_echoed = now.isoformat(), echoed_now(now)
    # The same actor usually appears many times in a batch: read each one once.
    actor_refs: dict[tuple, ActorRef] = {}
    candidates = []
    for index, event in enumerate(events):
        if index in failed:
            continue
        event_type = event["eventType"]
        if allowed is not None and event_type not in allowed:
            rejected.append(Rejection(index, "forbidden_event_type",
                                      f"eventType {event_type!r} is not in this app's allowedEventTypes."))
            continue
        metadata_json, refusal = metadata_text(event.get("metadata"), max_meta)
        if refusal is not None:
            rejected.append(Rejection(index, "invalid_body", refusal))
            continue
        raw_timestamp = event.get("timestamp")
        if raw_timestamp is None:
            occurred_at, offset, echoed, stamp = now, 0, now_echoed, now_text
        else:
            try:
                value, offset = parse_timestamp(raw_timestamp)
                # COPY needs only the text (the instant would cost more than all else here).
                if postgres:
                    occurred_at, stamp = None, copy_timestamp(raw_timestamp, value, offset)
                else:
                    occurred_at, stamp = value.astimezone(dt.UTC), None
            except (ValueError, OverflowError) as exc:
                rejected.append(Rejection(index, "invalid_body", f"timestamp {raw_timestamp!r} is not usable: {exc}."))
                continue
            echoed = raw_timestamp
        actor = event["actor"]
        actor_key = (actor.get("workerId"), actor.get("externalId"), actor.get("email"), actor.get("displayName"))
        ref = actor_refs.get(actor_key)
        if ref is None:
            ref = actor_ref(actor)
            if isinstance(ref, Rejection):
                ref.index = index
                rejected.append(ref)
                continue
            actor_refs[actor_key] = ref
        duration = event.get("duration")
        # JSON Schema counts 120.0 as an integer; the column takes 120.
        candidates.append((index, ref, event_type, event["category"], occurred_at, stamp, offset,
                           None if duration is None else int(duration), metadata_json, echoed))

    accepted: list[dict[str, Any]] = []
    if candidates:
        directory = WorkerDirectory(session, organization_id, connection_id)
        directory.resolve_all(actor_refs.values())  # refs without repeats, in first-seen order
        # Each distinct actor looked up once (refs repeat; hashing one is Python code).
        by_ref = {id(ref): directory.find(ref) for ref in actor_refs.values()}
        found = [by_ref[id(candidate[1])] for candidate in candidates]
        resolved = len(found) - found.count(None)
        # Without a quota the usage row is charged after the rows are written, so its lock
        # (which serializes an organization's batches) is held only until the commit.
        fits = resolved if quota is None else charge(session, organization_id, resolved, quota, now)
        writer = EventWriter(session)
        add = writer.batch(organization_id, app.app_id, connection_name(app.slug), request_id, now)
        for (index, ref, event_type, category, occurred_at, stamp, offset, duration, metadata_json, echoed), worker \
                in zip(candidates, found, strict=True):
            if worker is None:
                rejected.append(Rejection(index, "worker_not_found",
                                          f"actor.workerId {ref.raw_worker_id!r} "
                                          "names no worker of this organization."))
            elif len(accepted) < fits:
                add(worker[0], EVENT, event_type, category, occurred_at, stamp, offset, duration, metadata_json)
                accepted.append({"eventType": event_type, "timestamp": echoed})
            else:
                rejected.append(Rejection(index, "quota_exceeded",
                                          f"The plan's monthly quota of {quota} events is used up."))
        write_events(writer)
        if quota is None:
            charge(session, organization_id, len(accepted), None, now)
    if not accepted and all(r.code == "forbidden_event_type" for r in rejected):
        types = sorted({events[r.index]["eventType"] for r in rejected})
        raise DomainError("forbidden_event_type",
                          f"No event type of the batch is in this app's allowedEventTypes: {', '.join(types)[:500]}.")
    rejected.sort(key=lambda r: r.index)
    return BatchResult(accepted, rejected)


def ingest_snapshot(
    session: Session,
    *,
    principal: dict,
    snapshot: dict,
    rules: IngestRules,
    request_id: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Stores the snapshot as a timeline row and makes it the worker's card for this app
    unless a newer one is already there. Returns the worker `{id, displayName}`."""
    now = now or utcnow()
    organization_id = uuid.UUID(principal["organization_id"])
    app = load_app(session, uuid.UUID(principal["app_id"]))
    quota = rules.monthly_events.get(principal["plan"])
    if remaining_quota(session, organization_id, quota, now) == 0:
        raise quota_exceeded(quota, now)
    raw_timestamp = snapshot.get("timestamp")
    if raw_timestamp is None:
        occurred_at, offset = now, 0
    else:
        try:
            value, offset = parse_timestamp(raw_timestamp)
            occurred_at = value.astimezone(dt.UTC)
        except (ValueError, OverflowError) as exc:
            raise DomainError("invalid_body", f"timestamp {raw_timestamp!r} is not usable: {exc}.") from None
    payload = {"metrics": snapshot["metrics"]}
    if snapshot.get("metadata") is not None:
        payload["metadata"] = snapshot["metadata"]
    try:
        payload_json, _ = to_json(payload)
    except RecursionError:
        raise DomainError("invalid_body", "metrics and metadata are nested too deeply to store.") from None
    if has_nul(payload_json):
        raise DomainError("invalid_body", "metrics and metadata must not contain NUL characters.")
    ref = actor_ref(snapshot["actor"])
    if isinstance(ref, Rejection):
        raise DomainError(ref.code, ref.message)
    directory = WorkerDirectory(session, organization_id, ensure_connection(session, app))
    directory.resolve_all([ref])
    found = directory.find(ref)
    if found is None:
        raise DomainError("worker_not_found",
                          f"actor.workerId {ref.raw_worker_id!r} names no worker of this organization.")
    worker_id, display_name = found
    if charge(session, organization_id, 1, quota, now) == 0:
        raise quota_exceeded(quota, now)
    snapshot_type = snapshot["snapshotType"]
    copy_rows(session, [(organization_id, app.id, worker_id, connection_name(app.slug), SNAPSHOT, snapshot_type,
                         None, occurred_at, offset, None, payload_json, request_id, now)])
    ins = upsert_insert(session.get_bind().dialect.name, WorkerSnapshot)
    values = {"app_id": app.id, "worker_id": worker_id, "organization_id": organization_id,
              "snapshot_type": snapshot_type, "metrics": snapshot["metrics"],
              "metadata": snapshot.get("metadata"), "occurred_at": occurred_at,
              "utc_offset_minutes": offset, "updated_at": now}
    table = WorkerSnapshot.__table__
    # Only a snapshot at least as recent as the shown one replaces it.
    session.execute(ins.values(values).on_conflict_do_update(
        index_elements=["app_id", "worker_id"],
        set_={name: ins.excluded[name] for name in values if name not in ("app_id", "worker_id")},
        where=table.c.occurred_at <= ins.excluded.occurred_at,
    ))
    return {"id": str(worker_id), "displayName": display_name or ref.display_name or ref.external_id or ref.email or ""}
