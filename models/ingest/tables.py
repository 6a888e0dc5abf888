"""The ingest tables: workers, their synthetic app connections, timeline events, the
latest snapshot per worker per app, and the monthly event usage of each organization."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.db import Base, CreatedAt, UUIDPk, upsert_insert

# Synthetic integration connection of an app: the `source` of its timeline rows.
CONNECTION_PREFIX = "custom:"

EVENT = "event"
SNAPSHOT = "snapshot"


def connection_name(app_slug: str) -> str:
    return CONNECTION_PREFIX + app_slug


class IngestConnection(Base):
    """The synthetic `custom:<app-slug>` connection through which an app's data arrives."""

    __tablename__ = "ingest_connections"

    id: Mapped[UUIDPk]
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[CreatedAt]


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (
        # `ext:<externalId>` or `email:<lowercased email>`: auto-creation is race-free.
        UniqueConstraint("organization_id", "identity"),
        Index("ix_workers_org_external_id", "organization_id", "external_id"),
        Index("ix_workers_org_email", "organization_id", "email"),
    )

    id: Mapped[UUIDPk]
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    identity: Mapped[str | None] = mapped_column(String(330))
    external_id: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(200))
    # The app connection the worker was auto-created through (None: created otherwise).
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ingest_connections.id", ondelete="SET NULL")
    )
    created_at: Mapped[CreatedAt]


class IngestEvent(Base):
    """One timeline row. Snapshots are stored here too (kind `snapshot`)."""

    __tablename__ = "ingest_events"
    __table_args__ = (Index("ix_ingest_events_org_occurred", "organization_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    organization_id: Mapped[uuid.UUID]
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(10))
    event_type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime]
    # The client's own offset, kept so the original local time can be rebuilt.
    utc_offset_minutes: Mapped[int] = mapped_column(SmallInteger())
    duration: Mapped[int | None]
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    request_id: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[dt.datetime]


class WorkerSnapshot(Base):
    """The most recent snapshot per worker per app: what the user strip shows."""

    __tablename__ = "worker_snapshots"

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    snapshot_type: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]]
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    occurred_at: Mapped[dt.datetime]
    utc_offset_minutes: Mapped[int] = mapped_column(SmallInteger())
    updated_at: Mapped[dt.datetime]


class IngestUsage(Base):
    """Accepted events per organization per calendar month (UTC): the plan quota."""

    __tablename__ = "ingest_usage"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger(), default=0)


def insert_ignore(session: Session, model, rows: list[dict], conflict: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    if rows:
        ins = upsert_insert(session.get_bind().dialect.name, model)
        session.execute(ins.on_conflict_do_nothing(index_elements=conflict), rows)
