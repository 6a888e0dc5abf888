"""The durable notification outbox and its delivery attempts.

`notify` writes one delivery per channel (tenant admin e-mail, chatbot webhook) in the
caller's transaction: it commits together with the lead or escalation, or not at all.
Workers (`scripts/worker`) then claim due deliveries, send them outside any
transaction, and record every attempt; failures are retried with exponential backoff
up to a maximum number of attempts.

Claiming is safe with several workers: one UPDATE takes a lease on a batch of due
rows (on PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED; on SQLite the
single statement is atomic because writers are serialized). A worker that dies loses
its lease when it expires and another worker picks the delivery up again; the
webhook-id stays the same, so receivers can deduplicate such a repeat.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from typing import Any, Callable

from sqlalchemy import ForeignKey, Index, String, Text, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from handlers.runtime.config import Settings
from models import notify as sender
from models.alpinechat import Chatbot, ensure_webhook_secret
from models.db import Base, CreatedAt, Database, UUIDPk, utcnow

log = logging.getLogger("outbox")

CHANNELS = ("email", "webhook")
STATUSES = ("pending", "delivered", "failed")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 30.0  # 30 s, 1 min, 2 min, ... capped
    cap_seconds: float = 6 * 3600.0

    def delay(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


class Delivery(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[UUIDPk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(64))
    # The webhook URL or the e-mail address as configured when the event happened.
    target: Mapped[str] = mapped_column(String(2048))
    # Webhook: the Standard Webhooks body; e-mail: {"subject", "text"}.
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # A worker's claim: nobody else sends it until the lease expires.
    lease_until: Mapped[dt.datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    delivered_at: Mapped[dt.datetime | None]

    attempt_log: Mapped[list["DeliveryAttempt"]] = relationship(
        back_populates="delivery", order_by="DeliveryAttempt.number", cascade="all, delete-orphan")

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class DeliveryAttempt(Base):
    __tablename__ = "outbox_attempts"

    id: Mapped[UUIDPk]
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    worker: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[int]
    ok: Mapped[bool]
    # HTTP status of the receiver, or the SMTP reply code.
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def notify(session: Session, chatbot: Chatbot, event_type: str, data: dict[str, Any], *,
           subject: str, text: str) -> list[Delivery]:
    """Queues the admin e-mail and the webhook for one event, in the caller's transaction."""
    now = utcnow()
    deliveries = []
    admin_email = chatbot.tenant.admin_email
    if admin_email:
        deliveries.append(Delivery(channel="email", target=admin_email,
                                   payload={"subject": subject, "text": text}))
    if chatbot.webhook_url:
        ensure_webhook_secret(chatbot)
        deliveries.append(Delivery(channel="webhook", target=chatbot.webhook_url,
                                   payload={"type": event_type, "timestamp": _iso(now), "data": data}))
    for delivery in deliveries:
        delivery.id = uuid.uuid4()
        delivery.tenant_id, delivery.chatbot_id = chatbot.tenant_id, chatbot.id
        delivery.event_type, delivery.status, delivery.attempts = event_type, "pending", 0
        delivery.next_attempt_at = now
        session.add(delivery)
    session.flush()
    return deliveries


# ── Worker side ──────────────────────────────────────────────────────────────


def claim(database: Database, worker: str, *, now: dt.datetime, limit: int = 10,
          lease: dt.timedelta = dt.timedelta(minutes=5),
          exclude: set[uuid.UUID] | frozenset = frozenset()) -> list[uuid.UUID]:
    """Leases up to `limit` due deliveries (other than `exclude`) to `worker`; returns their ids."""
    token = f"{worker}#{uuid.uuid4().hex[:8]}"
    due = (select(Delivery.id)
           .where(Delivery.status == "pending", Delivery.next_attempt_at <= now,
                  or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
           .order_by(Delivery.next_attempt_at).limit(limit))
    if exclude:
        due = due.where(Delivery.id.not_in(exclude))
    if not database.is_sqlite:
        due = due.with_for_update(skip_locked=True)
    with database.unit_of_work() as session:
        session.execute(update(Delivery).where(Delivery.id.in_(due))
                        .values(lease_until=now + lease, leased_by=token)
                        .execution_options(synchronize_session=False))
    with database.unit_of_work() as session:
        return list(session.scalars(select(Delivery.id).where(Delivery.leased_by == token)))


def _send(delivery: Delivery, secret: str | None, settings: Settings, http_client) -> sender.Outcome:
    if delivery.channel == "email":
        return sender.send_mail(settings, delivery.target, delivery.payload["subject"],
                                delivery.payload["text"], delivery.webhook_id)
    if not secret:
        return sender.Outcome(ok=False, error="the chatbot has no webhook secret", retryable=False)
    return sender.send_webhook(delivery.target, secret, delivery.webhook_id, delivery.payload, settings,
                               client=http_client)


def deliver(database: Database, delivery_id: uuid.UUID, settings: Settings, *, worker: str,
            now: dt.datetime | None = None, policy: RetryPolicy = RetryPolicy(),
            http_client=None) -> sender.Outcome:
    """One attempt for a claimed delivery, recorded with its outcome."""
    with database.unit_of_work() as session:
        delivery = session.get(Delivery, delivery_id)
        chatbot = session.get(Chatbot, delivery.chatbot_id)
        # The endpoint's current secret: after a rotation the retries verify with the new one.
        secret = chatbot.webhook_secret if chatbot else None
    started = now or utcnow()
    # Sent with no transaction open: a slow receiver holds no locks and no connection.
    try:
        outcome = _send(delivery, secret, settings, http_client)
    except Exception as exc:  # a bug in sending must not stop the worker
        log.exception("delivery %s crashed", delivery_id)
        outcome = sender.Outcome(ok=False, error=f"internal: {type(exc).__name__}: {exc}"[:1000])
    now = now or utcnow()
    with database.unit_of_work() as session:
        delivery = session.get(Delivery, delivery_id)
        number = delivery.attempts + 1
        session.add(DeliveryAttempt(delivery_id=delivery.id, number=number, worker=worker, started_at=started,
                                    duration_ms=outcome.duration_ms, ok=outcome.ok,
                                    status_code=outcome.status_code, error=outcome.error))
        delivery.attempts = number
        delivery.lease_until, delivery.leased_by = None, None
        if outcome.ok:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
        else:
            delivery.last_error = outcome.error
            if not outcome.retryable or number >= policy.max_attempts:
                delivery.status = "failed"
            else:
                delivery.next_attempt_at = now + policy.delay(number)
    log.info("delivery %s %s attempt %d: %s", delivery_id, delivery.channel, number,
             "ok" if outcome.ok else outcome.error)
    return outcome


def run_once(database: Database, settings: Settings, *, worker: str, now: dt.datetime | None = None,
             limit: int = 10, policy: RetryPolicy = RetryPolicy(), http_client=None,
             on_outcome: Callable[[uuid.UUID, sender.Outcome], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False) -> int:
    """Claims and attempts every due delivery (batch by batch); returns how many were tried.
    A stop request ends it between batches; leases of an unfinished batch simply expire."""
    seen: set[uuid.UUID] = set()
    owned = http_client is None
    # One client (its TLS context and connection pool) for the whole run.
    http_client = http_client or sender.http_client()
    try:
        return _run(database, settings, worker, now, limit, policy, http_client, on_outcome, should_stop, seen)
    finally:
        if owned:
            http_client.close()


def _run(database, settings, worker, now, limit, policy, http_client, on_outcome, should_stop, seen) -> int:
    tried = 0
    while not should_stop():
        moment = now or utcnow()
        lease = dt.timedelta(seconds=60 + limit * (sender.HTTP_TIMEOUT + sender.SMTP_TIMEOUT))
        # One attempt per delivery and run, even when its retry is due at once.
        ids = claim(database, worker, now=moment, limit=limit, lease=lease, exclude=seen)
        if not ids:
            return tried
        for delivery_id in ids:
            seen.add(delivery_id)
            outcome = deliver(database, delivery_id, settings, worker=worker, now=now, policy=policy,
                              http_client=http_client)
            tried += 1
            if on_outcome:
                on_outcome(delivery_id, outcome)
    return tried


# ── Back office ──────────────────────────────────────────────────────────────


def list_deliveries(session: Session, *, status: str | None = None, chatbot_id: uuid.UUID | None = None,
                    limit: int = 50) -> list[Delivery]:
    query = select(Delivery)
    if status:
        query = query.where(Delivery.status == status)
    if chatbot_id:
        query = query.where(Delivery.chatbot_id == chatbot_id)
    return list(session.scalars(query.order_by(Delivery.created_at.desc()).limit(limit)))


def attempts_of(session: Session, delivery_id: uuid.UUID) -> list[DeliveryAttempt]:
    return list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                .order_by(DeliveryAttempt.number)))


def requeue(session: Session, delivery_id: uuid.UUID) -> Delivery | None:
    """Makes a failed (or waiting) delivery due now; a failed one gets one more attempt
    (the attempt count keeps growing, so the log stays in order)."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is not None and delivery.status != "delivered":
        delivery.status, delivery.next_attempt_at = "pending", utcnow()
        delivery.lease_until = delivery.leased_by = None
    return delivery
