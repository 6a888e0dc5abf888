"""WePeople ingest: workers, their synthetic app connections, timeline events, the latest
snapshot per worker per app, and the monthly event usage of each organization.

The insert path is written for throughput: one query resolves every actor of a batch,
missing workers are created with one conflict-tolerant INSERT, and the accepted events
go to PostgreSQL with COPY (SQLite: one executemany), all in the caller's transaction.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import json
import uuid
from typing import Any, Iterable, Sequence

import orjson
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    Uuid,
    and_,
    any_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.db import Base, CreatedAt, Prepared, UUIDPk, utcnow
from models.errors import DomainError
from models.wepeople import App

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


# ── Rules from the contract ──────────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class IngestRules:
    """What the contract says about ingestion, read from the spec by the handler layer."""

    metadata_max_bytes: int | None
    batch_limit: int
    # plan -> monthly accepted events; None = unlimited.
    monthly_events: dict[str, int | None]


@dataclasses.dataclass
class Rejection:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclasses.dataclass
class BatchResult:
    accepted: list[dict[str, Any]]
    rejected: list[Rejection]


# ── Small parsers ────────────────────────────────────────────────────────────


_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _orjson(value: Any) -> bytes | None:
    # orjson (~15x faster) writes the stdlib's text except: NaN/Infinity as null (so a
    # null sends us to the stdlib), integers beyond 64 bits and lone surrogates refused,
    # and floats as the same value in other digits (1e-5 as 0.00001, 3e-06 as 3e-6).
    try:
        out = orjson.dumps(value)
    except TypeError:
        return None
    return None if b"null" in out else out


def dumps(value: Any) -> str:
    """Compact JSON, as json.dumps(ensure_ascii=False) writes it (floats: the same value)."""
    out = _orjson(value)
    return _json_text(value) if out is None else out.decode()


def serialize(value: Any, limit: int | None) -> tuple[str, int | None]:
    """dumps() and, when there is a limit, the UTF-8 size of the stdlib's text: orjson's
    float digits are at most 1.25x shorter, so its size decides only below limit / 2."""
    out = _orjson(value)
    if out is not None and (limit is None or len(out) <= limit // 2):
        return out.decode(), len(out)
    text = _json_text(value)
    return text, None if limit is None else len(text.encode())


def metadata_text(metadata: Any, max_bytes: int | None) -> tuple[str | None, str | None]:
    """(the metadata as JSON text, None) or (None, why it is refused)."""
    if metadata is None:
        return None, None
    try:
        out = orjson.dumps(metadata)
    except TypeError:
        out = None
    # The common case in one step: orjson's text (which escapes NUL) surely fits, has no null.
    if (out is not None and (max_bytes is None or len(out) <= max_bytes // 2)
            and b"null" not in out and b"\\u0000" not in out):
        return out.decode(), None
    try:
        text, size = serialize(metadata, max_bytes)
    except RecursionError:  # deeper than the stdlib's encoder goes (~950 levels)
        return None, "metadata is nested too deeply to store."
    if max_bytes is not None and size > max_bytes:
        return None, f"metadata is {size} bytes serialized; at most {max_bytes} are allowed."
    if has_nul(text):
        return None, "metadata must not contain NUL characters."
    return text, None


_OFFSETS: dict[dt.tzinfo, int] = {}  # at most one entry per offset (< 48 hours of minutes)


def _offset_minutes(tz: dt.tzinfo) -> int:
    minutes = _OFFSETS.get(tz)
    if minutes is None:
        minutes = _OFFSETS[tz] = int(tz.utcoffset(None).total_seconds() // 60)
    return minutes


def read_timestamp(raw: str) -> tuple[dt.datetime, int]:
    """(UTC instant, the client's offset in minutes). Raises ValueError or OverflowError
    (an instant outside years 1-9999 in UTC)."""
    value = _aware(raw.upper())
    return value.astimezone(dt.timezone.utc), _offset_minutes(value.tzinfo)


def _aware(upper: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(upper)
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone offset")
    return value


def parse_timestamp(raw: str | None, now: dt.datetime) -> tuple[dt.datetime, int, str]:
    """(UTC instant, original offset in minutes, timestamp as echoed). Raises ValueError."""
    if raw is None:
        return now, 0, now.isoformat().replace("+00:00", "Z")
    instant, minutes = read_timestamp(raw)
    return instant, minutes, raw


# PostgreSQL's limit on an input offset (RFC 3339 allows up to 23:59).
_PG_MAX_OFFSET_MINUTES = 15 * 60 + 59


def copy_timestamp(raw: str) -> tuple[str, int]:
    """(timestamptz input for COPY, the client's offset in minutes) for a format-checked
    RFC 3339 timestamp; raises like read_timestamp(). The text itself is passed on,
    upper-cased, when PostgreSQL reads it as Python does: an offset within its ±15:59,
    at most 6 fraction digits (more are rounded there, cut here), a year whose instant
    stays within 1-9999 in UTC. Otherwise the UTC instant is formatted (~10x the CPU)."""
    upper = raw.upper()
    value = _aware(upper)
    minutes = _offset_minutes(value.tzinfo)
    if (1 < value.year < 9999 and -_PG_MAX_OFFSET_MINUTES <= minutes <= _PG_MAX_OFFSET_MINUTES
            and len(upper) - (20 if upper[-1] == "Z" else 25) <= 7 and "," not in upper):
        return upper, minutes
    return value.astimezone(dt.timezone.utc).isoformat(), minutes


def current_month(now: dt.datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def seconds_until_next_month(now: dt.datetime) -> int:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    return max(1, int((start - now).total_seconds()) + 1)


def _clean(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def has_nul(text: str) -> bool:
    # NUL survives JSON as \u0000, which PostgreSQL text and jsonb refuse.
    return "\x00" in text or "\\u0000" in text


# ── Organizations, apps, connections ─────────────────────────────────────────


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
    _insert_ignore(session, IngestConnection, [{
        "id": uuid.uuid4(), "organization_id": app.organization_id, "app_id": app.id,
        "name": connection_name(app.slug), "created_at": utcnow(),
    }], ["app_id"])
    return session.scalar(select(IngestConnection.id).where(IngestConnection.app_id == app.id))


def _insert_ignore(session: Session, model, rows: list[dict], conflict: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    session.execute(ins.on_conflict_do_nothing(index_elements=conflict), rows)


# ── Actors ───────────────────────────────────────────────────────────────────


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


def actor_ref(actor: dict) -> ActorRef | Rejection:
    """Reads one actor; returns a Rejection (index -1, filled by the caller) when unusable."""
    display_name = _clean(actor.get("displayName"))
    raw_id = actor.get("workerId")
    if isinstance(raw_id, str) and raw_id.strip():
        try:
            return ActorRef(worker_id=uuid.UUID(raw_id.strip()), raw_worker_id=raw_id, display_name=display_name)
        except ValueError:
            return Rejection(-1, "worker_not_found", f"actor.workerId {raw_id[:80]!r} names no worker of this organization.")
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
            _insert_ignore(self.session, Worker, list(missing.values()), ["organization_id", "identity"])
            self._load(_WORKERS.identity.in_(list(missing)))

    def find(self, ref: ActorRef) -> tuple[uuid.UUID, str | None] | None:
        if ref.worker_id is not None:
            return self.by_id.get(ref.worker_id)
        if ref.external_id is not None:
            return self.by_identity.get(ref.identity) or self.by_external.get(ref.external_id)
        return self.by_identity.get(ref.identity) or self.by_email.get(ref.email)


# ── Quota ────────────────────────────────────────────────────────────────────


def remaining_quota(session: Session, organization_id: uuid.UUID, quota: int | None, now: dt.datetime) -> int | None:
    if quota is None:
        return None
    used = session.scalar(select(IngestUsage.events).where(
        IngestUsage.organization_id == organization_id, IngestUsage.month == current_month(now))) or 0
    return max(0, quota - used)


def quota_exceeded(quota: int, now: dt.datetime) -> DomainError:
    retry = seconds_until_next_month(now)
    return DomainError("quota_exceeded",
                       f"The plan's monthly quota of {quota} events is used up; it renews in {retry}s.",
                       headers={"Retry-After": str(retry)})


@functools.cache
def _usage_upsert(dialect: str):
    table = IngestUsage.__table__
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return Prepared(ins.values(organization_id=bindparam("organization_id"), month=bindparam("month"),
                               events=bindparam("wanted")).on_conflict_do_update(
        index_elements=["organization_id", "month"], set_={"events": table.c.events + ins.excluded.events},
    ).returning(table.c.events))


_USAGE_GIVE_BACK = (
    update(IngestUsage.__table__)
    .where(_USAGE.organization_id == bindparam("org"), _USAGE.month == bindparam("this_month"))
    .values(events=_USAGE.events - bindparam("over"))
)


def charge(session: Session, organization_id: uuid.UUID, wanted: int, quota: int | None, now: dt.datetime) -> int:
    """Adds up to `wanted` events to this month's usage, atomically against concurrent
    requests (the usage row stays locked until the transaction ends); returns how many
    fit in the quota."""
    if wanted <= 0:
        return 0
    params = {"organization_id": organization_id, "month": current_month(now), "wanted": wanted}
    total = _usage_upsert(session.get_bind().dialect.name).rows(session, params)[0].events
    if quota is None or total <= quota:
        return wanted
    over = min(wanted, total - quota)
    session.execute(_USAGE_GIVE_BACK, {"org": organization_id, "this_month": params["month"], "over": over})
    return wanted - over


# ── Persistence ──────────────────────────────────────────────────────────────

EVENT_COLUMNS = ("organization_id", "app_id", "worker_id", "source", "kind", "event_type", "category",
                 "occurred_at", "utc_offset_minutes", "duration", "metadata", "request_id", "received_at")


COPY_EVENTS = f"COPY ingest_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_json(text: str) -> str:
    # JSON text never holds raw control characters (writers escape them): only the
    # backslashes of its escapes need doubling for COPY.
    return text.replace("\\", "\\\\") if "\\" in text else text


def copy_rows(session: Session, rows: Sequence[tuple]) -> None:
    """Writes event rows (EVENT_COLUMNS order; metadata already JSON text) within the
    session's transaction: COPY on PostgreSQL, executemany elsewhere."""
    writer = EventWriter(session)
    for row in rows:
        writer.add_row(row)
    writer.flush()


def write_events(writer: "EventWriter") -> None:
    writer.flush()


class EventWriter:
    """Collects the timeline rows of one request and writes them in one statement.
    On PostgreSQL the COPY text is built as the rows come (the fields that never need
    escaping are formatted directly); elsewhere rows are kept for one executemany."""

    def __init__(self, session: Session):
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.lines: list[str] = []
        self.records: list[dict] = []

    def add_row(self, row: tuple) -> None:
        if self.postgres:
            self.lines.append("\t".join([_copy_text(v.isoformat() if isinstance(v, dt.datetime) else v)
                                         for v in row]) + "\n")
        else:
            record = dict(zip(EVENT_COLUMNS, row))
            if record["metadata"] is not None:
                record["metadata"] = json.loads(record["metadata"])
            self.records.append(record)

    def batch(self, organization_id, app_id, source: str, request_id: str, received_at: dt.datetime):
        """A fast adder for many events sharing organization, app, source and request."""
        if not self.postgres:
            def add(worker_id, kind, event_type, category, occurred_at, stamp, offset, duration, metadata_json):
                self.add_row((organization_id, app_id, worker_id, source, kind, event_type, category, occurred_at,
                              offset, duration, metadata_json, request_id, received_at))
            return add
        head = f"{organization_id}\t{app_id}\t"
        middle = f"\t{_copy_text(source)}\t"
        tail = f"\t{_copy_text(request_id)}\t{received_at.isoformat()}\n"
        append = self.lines.append
        # str(UUID) and hash(UUID) are slow Python; actors repeat, as the same objects.
        worker_texts: dict[int, str] = {}

        def add(worker_id, kind, event_type, category, occurred_at, stamp, offset, duration, metadata_json):
            """`stamp`: the instant as PostgreSQL timestamptz text (see copy_timestamp)."""
            worker = worker_texts.get(id(worker_id))
            if worker is None:
                worker = worker_texts[id(worker_id)] = str(worker_id)
            # kind, category (enum) and eventType (pattern) never hold COPY's special characters.
            append(f"{head}{worker}{middle}{kind}\t{event_type}\t{category or NULL}\t{stamp}"
                   f"\t{offset}\t{NULL if duration is None else duration}"
                   f"\t{NULL if metadata_json is None else _copy_json(metadata_json)}{tail}")
        return add

    def flush(self) -> None:
        if self.lines:
            cursor = self.session.connection().connection.dbapi_connection.cursor()
            try:
                data = "".join(self.lines).encode()
                # One read of the whole buffer: psycopg2 otherwise reads and sends 8 KB at a time.
                cursor.copy_expert(COPY_EVENTS, io.BytesIO(data), size=len(data))
            finally:
                cursor.close()
            self.lines = []
        if self.records:
            self.session.execute(insert(IngestEvent.__table__), self.records)
            self.records = []


NULL = "\\N"


# ── Events ───────────────────────────────────────────────────────────────────


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
    now_text = now.isoformat()
    now_echoed = now_text.replace("+00:00", "Z")
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
                # COPY needs only the text (the instant would cost more than all else here).
                if postgres:
                    occurred_at, (stamp, offset) = None, copy_timestamp(raw_timestamp)
                else:
                    (occurred_at, offset), stamp = read_timestamp(raw_timestamp), None
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
                in zip(candidates, found):
            if worker is None:
                rejected.append(Rejection(index, "worker_not_found",
                                          f"actor.workerId {ref.raw_worker_id!r} names no worker of this organization."))
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


# ── Snapshots ────────────────────────────────────────────────────────────────


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
    try:
        occurred_at, offset, _ = parse_timestamp(snapshot.get("timestamp"), now)
    except (ValueError, OverflowError) as exc:
        raise DomainError("invalid_body", f"timestamp {snapshot.get('timestamp')!r} is not usable: {exc}.")
    payload = {"metrics": snapshot["metrics"]}
    if snapshot.get("metadata") is not None:
        payload["metadata"] = snapshot["metadata"]
    try:
        payload_json = dumps(payload)
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
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WorkerSnapshot)
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


# ── Reading ──────────────────────────────────────────────────────────────────


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


def get_worker(session: Session, worker_id: uuid.UUID) -> Worker | None:
    return session.get(Worker, worker_id)


def usage(session: Session, organization_id: uuid.UUID, month: str) -> int:
    return session.scalar(select(IngestUsage.events).where(
        IngestUsage.organization_id == organization_id, IngestUsage.month == month)) or 0
