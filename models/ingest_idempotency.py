"""Idempotency records: the first response per (API key, Idempotency-Key), kept in the
database so that every worker and host replays the same one.

A record is claimed (inserted, `status` NULL) before the request is processed; the
unique constraint makes exactly one concurrent request the owner. The owner stores its
response in the same transaction as its effects, so a replayed response always matches
what was persisted. Used by handlers/runtime/idempotency.py for any operation that
declares `x-idempotency`.

A claim is held by a lease that its owner's process keeps renewing while the request
runs (`renew`); a claim whose lease ran out (the worker died, or the request failed
while the database was away and could not release it) is taken over by the next
request. The owner's `complete` is fenced by its `claim_token`: an owner whose claim
was taken over stores nothing, its transaction rolls back, and only one of them can
ever commit the request's effects.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint, and_, delete, or_, select, update
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
    # The owning request's own token, and until when its claim holds without renewal.
    # NULL in claims written before leases existed (see LEGACY_LEASE).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[dt.datetime | None]


# How long a claim written before leases existed (no lease_until) holds.
LEGACY_LEASE = dt.timedelta(seconds=120)


def _lapsed(now: dt.datetime):
    """Unfinished claims whose lease ran out: nobody is working on them any more."""
    return IdempotencyRecord.status.is_(None) & or_(
        IdempotencyRecord.lease_until <= now,
        and_(IdempotencyRecord.lease_until.is_(None), IdempotencyRecord.created_at <= now - LEGACY_LEASE))


def expired(now: dt.datetime):
    """Records past their replay window that nobody is working on any more (retention)."""
    return (IdempotencyRecord.expires_at <= now) & (IdempotencyRecord.status.is_not(None) | _lapsed(now))


def lapsed(record: IdempotencyRecord, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    until = record.lease_until or record.created_at + LEGACY_LEASE
    return record.status is None and until <= now


def find(session: Session, owner: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key))


# Callers read a record again after these statements rather than reuse an object they
# loaded before, so SQLAlchemy need not evaluate the WHERE clauses in Python to keep
# loaded objects in step (about a quarter of an idempotent request's ORM time).
NO_SYNC = {"synchronize_session": False}


def claim(session: Session, owner: str, key: str, request_hash: str, window: dt.timedelta,
          lease: dt.timedelta, token: str, now: dt.datetime | None = None) -> IdempotencyRecord | None:
    """Tries to become the owner of (owner, key) under `token`. Returns None when claimed,
    else the existing live record. An expired record, or a claim whose lease ran out, is
    taken over. The caller commits; on a conflict the session's transaction is rolled back."""
    now = now or utcnow()
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
        (IdempotencyRecord.expires_at <= now) | _lapsed(now),
    ).execution_options(**NO_SYNC))
    try:
        session.add(IdempotencyRecord(owner=owner, idempotency_key=key, request_hash=request_hash,
                                      created_at=now, expires_at=now + window,
                                      claim_token=token, lease_until=now + lease))
        session.flush()
        return None
    except IntegrityError:
        # Another request owns the key: start over in a fresh transaction to read it.
        session.rollback()
        return find(session, owner, key)


def renew(session: Session, tokens: list[str], lease: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Extends the leases of the claims in flight under `tokens`."""
    result = session.execute(update(IdempotencyRecord).where(
        IdempotencyRecord.claim_token.in_(tokens), IdempotencyRecord.status.is_(None),
    ).values(lease_until=(now or utcnow()) + lease).execution_options(**NO_SYNC))
    return result.rowcount


def complete(session: Session, owner: str, key: str, token: str, status: int, headers: dict[str, str],
             body: bytes) -> bool:
    """Stores the response in the owner's transaction. False when the claim is no longer
    this token's (it lapsed and was taken over): the caller must roll back its effects."""
    result = session.execute(update(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
        IdempotencyRecord.claim_token == token, IdempotencyRecord.status.is_(None),
    ).values(status=status, headers=headers, body=body).execution_options(**NO_SYNC))
    return result.rowcount == 1


def release(session: Session, owner: str, key: str, token: str) -> None:
    """Gives up an unfinished claim (its request failed): a retry may run again."""
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.owner == owner, IdempotencyRecord.idempotency_key == key,
        IdempotencyRecord.claim_token == token, IdempotencyRecord.status.is_(None)).execution_options(**NO_SYNC))
