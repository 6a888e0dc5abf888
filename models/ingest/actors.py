"""The actors of events and snapshots: which worker each names, and the workers created
for actors seen for the first time (one query resolves every actor of a batch)."""
from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import String, Uuid, any_, bindparam, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models.db import Prepared, utcnow
from models.ingest.rules import Rejection
from models.ingest.tables import Worker, insert_ignore


@dataclasses.dataclass(frozen=True)
class ActorRef:
    """A usable actor: exactly one of worker_id / external_id / email decides."""

    worker_id: uuid.UUID | None = None
    external_id: str | None = None
    email: str | None = None
    display_name: str | None = None
    raw_worker_id: str | None = None

    @property
    def identity(self) -> str | None:
        if self.external_id is not None:
            return "ext:" + self.external_id
        if self.email is not None:
            return "email:" + self.email
        return None


def _clean(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def actor_ref(actor: dict) -> ActorRef | Rejection:
    """Reads one actor; returns a Rejection (index -1, filled by the caller) when unusable."""
    display_name = _clean(actor.get("displayName"))
    raw_id = actor.get("workerId")
    if isinstance(raw_id, str) and raw_id.strip():
        try:
            return ActorRef(worker_id=uuid.UUID(raw_id.strip()), raw_worker_id=raw_id, display_name=display_name)
        except ValueError:
            return Rejection(-1, "worker_not_found",
                             f"actor.workerId {raw_id[:80]!r} names no worker of this organization.")
    external_id = _clean(actor.get("externalId"))
    email = _clean(actor.get("email"))
    if external_id is None and email is None:
        return Rejection(-1, "missing_actor", "actor names no usable workerId, externalId or email.")
    for value in (external_id, email, display_name):
        if value is not None and "\x00" in value:
            return Rejection(-1, "invalid_body", "actor fields must not contain NUL characters.")
    return ActorRef(external_id=external_id, email=email.lower() if email else None, display_name=display_name)


# Core columns: the ORM's per-statement work cost more than these queries themselves.
_WORKERS = Worker.__table__.c


@functools.cache
def _worker_lookup(dialect: str):
    """One statement for every mix of worker ids, external ids and emails. PostgreSQL
    takes each list as one array parameter (`= ANY`), which costs far less to bind than
    an IN list; elsewhere an empty expanding IN renders as an always-false test."""
    c = _WORKERS
    if dialect == "postgresql":
        def among(column, name, item_type):
            return column == any_(bindparam(name, type_=postgresql.ARRAY(item_type)))
    else:
        def among(column, name, item_type):
            return column.in_(bindparam(name, expanding=True))
    return Prepared(
        select(c.id, c.identity, c.external_id, c.email, c.display_name)
        .where(c.organization_id == bindparam("organization_id"),
               or_(among(c.id, "ids", Uuid()), among(c.external_id, "externals", String()),
                   among(c.email, "emails", String())))
        .order_by(c.created_at)
    )


class WorkerDirectory:
    """Resolves the actors of one request with a constant number of queries."""

    def __init__(self, session: Session, organization_id: uuid.UUID, connection_id: uuid.UUID):
        self.session = session
        self.organization_id = organization_id
        self.connection_id = connection_id
        self.by_id: dict[uuid.UUID, tuple[uuid.UUID, str | None]] = {}
        self.by_identity: dict[str, tuple[uuid.UUID, str | None]] = {}
        self.by_external: dict[str, tuple[uuid.UUID, str | None]] = {}
        self.by_email: dict[str, tuple[uuid.UUID, str | None]] = {}

    def _remember(self, rows) -> None:
        for row in rows:
            entry = (row.id, row.display_name)
            self.by_id[row.id] = entry
            if row.identity:
                self.by_identity[row.identity] = entry
            if row.external_id is not None:
                self.by_external.setdefault(row.external_id, entry)
            if row.email is not None:
                self.by_email.setdefault(row.email, entry)

    def _load(self, condition) -> None:
        c = _WORKERS
        query = select(c.id, c.identity, c.external_id, c.email, c.display_name).where(
            c.organization_id == self.organization_id, condition)
        self._remember(self.session.execute(query.order_by(c.created_at)))

    def resolve_all(self, refs: Iterable[ActorRef]) -> None:
        refs = list(refs)
        ids = [r.worker_id for r in refs if r.worker_id is not None]
        externals = [r.external_id for r in refs if r.external_id is not None]
        emails = [r.email for r in refs if r.email is not None and r.external_id is None]
        if ids or externals or emails:
            lookup = _worker_lookup(self.session.get_bind().dialect.name)
            self._remember(lookup.rows(self.session, {
                "organization_id": self.organization_id, "ids": ids, "externals": externals, "emails": emails}))
        missing: dict[str, dict] = {}
        for ref in refs:
            if ref.worker_id is None and self.find(ref) is None and ref.identity not in missing:
                missing[ref.identity] = {
                    "id": uuid.uuid4(), "organization_id": self.organization_id, "identity": ref.identity,
                    "external_id": ref.external_id, "email": ref.email,
                    "display_name": ref.display_name, "connection_id": self.connection_id,
                    "created_at": utcnow(),
                }
        if missing:
            # A concurrent request may create the same identities: theirs win, then re-read.
            insert_ignore(self.session, Worker, list(missing.values()), ["organization_id", "identity"])
            self._load(_WORKERS.identity.in_(list(missing)))

    def find(self, ref: ActorRef) -> tuple[uuid.UUID, str | None] | None:
        if ref.worker_id is not None:
            return self.by_id.get(ref.worker_id)
        if ref.external_id is not None:
            return self.by_identity.get(ref.identity) or self.by_external.get(ref.external_id)
        return self.by_identity.get(ref.identity) or self.by_email.get(ref.email)
