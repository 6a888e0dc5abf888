"""Idempotency records: the first response per (API key, Idempotency-Key), kept in the
database so that every worker and host replays the same one.

A record is claimed (inserted, `status` NULL) before the request is processed; the
unique constraint makes exactly one concurrent request the owner. The owner stores its
response in the same transaction as its effects, so a replayed response always matches
what was persisted. Used by handlers/runtime/idempotency.py for any operation that
declares `x-idempotency`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.db import Base, UUIDPk, utcnow


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    id: Mapped[UUIDPk]
    # Whose key space this is: the authenticated API key's id.
    owner: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the canonical request (method, path, body).
    request_hash: Mapped[str] = mapped_column(String(64))
    # NULL while the owning request is still being processed.
    status: Mapped[int | None] = mapped_column(Integer())
    headers: Mapped[dict[str, Any] | None]
    body: Mapped[bytes | None] = mapped_column(LargeBinary())
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


def find(session: Session, owner: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key))


def claim(session: Session, owner: str, key: str, request_hash: str, window: dt.timedelta,
          lease: dt.timedelta, now: dt.datetime | None = None) -> IdempotencyRecord | None:
    """Tries to become the owner of (owner, key). Returns None when claimed, else the
    existing live record. An expired record, or a claim whose owner stopped answering
    for longer than `lease`, is taken over. The caller commits; on a conflict the
    session's transaction is rolled back."""
    now = now or utcnow()
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
        (IdempotencyRecord.expires_at <= now)
        | (IdempotencyRecord.status.is_(None) & (IdempotencyRecord.created_at <= now - lease)),
    ))
    try:
        session.add(IdempotencyRecord(owner=owner, idempotency_key=key, request_hash=request_hash,
                                      created_at=now, expires_at=now + window))
        session.flush()
        return None
    except IntegrityError:
        # Another request owns the key: start over in a fresh transaction to read it.
        session.rollback()
        return find(session, owner, key)


def complete(session: Session, owner: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
    session.execute(update(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
    ).values(status=status, headers=headers, body=body))


def release(session: Session, owner: str, key: str) -> None:
    """Gives up an unfinished claim (its request failed): a retry may run again."""
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
        IdempotencyRecord.status.is_(None)))


def purge_expired(session: Session, now: dt.datetime | None = None, limit: int = 1000) -> int:
    ids = list(session.scalars(select(IdempotencyRecord.id).where(
        IdempotencyRecord.expires_at <= (now or utcnow())).limit(limit)))
    if ids:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids)))
    return len(ids)
