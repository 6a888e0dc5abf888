"""The durable notification outbox and its delivery attempts.

`notify` writes one delivery per channel (tenant admin e-mail, chatbot webhook) in the
caller's transaction: it commits together with the lead or escalation, or not at all.
Workers (`scripts/worker`) then claim due deliveries, send them outside any
transaction, and record every attempt; failures are retried with exponential backoff
up to a maximum number of attempts.

Claiming is safe with several workers: one UPDATE takes a lease on a batch of due
rows (on PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED; on SQLite the
single statement is atomic because writers are serialized). The lease is short
(`OUTBOX_LEASE_SECONDS`, 30 s) and renewed every third of it while the worker works
through its batch, so a worker that dies (SIGKILL, a lost host) leaves its deliveries
to the others within a lease and a poll. Each attempt is recorded as `sending` before
anything is sent: a worker that dies mid-send leaves that row, and the worker that takes
the delivery over marks it `unknown` (the receiver may or may not have it) and sends
again with the same webhook-id, so receivers can deduplicate the repeat.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, case, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models import metrics
from models import notify as sender
from models.alpinechat import Chatbot, ensure_webhook_secret
from models.config import Settings
from models.db import Base, CreatedAt, Database, UUIDPk, utcnow

log = logging.getLogger("outbox")

STATUSES = ("pending", "delivered", "failed")
DEFAULT_LEASE_SECONDS = 30.0


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
    channel: Mapped[str] = mapped_column(String(16))  # "email" or "webhook"
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

    attempt_log: Mapped[list[DeliveryAttempt]] = relationship(
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
    # `sending` while in flight, then `delivered` or `failed`; `unknown` when its worker
    # stopped before recording what happened (set by the worker that took the delivery over).
    outcome: Mapped[str] = mapped_column(String(16))
    # Both None while the attempt is in flight and when its outcome is unknown.
    duration_ms: Mapped[int | None]
    ok: Mapped[bool | None]
    # HTTP status of the receiver, or the SMTP reply code.
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


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
          lease: dt.timedelta = dt.timedelta(seconds=DEFAULT_LEASE_SECONDS),
          exclude: set[uuid.UUID] | frozenset = frozenset(), token: str | None = None) -> list[uuid.UUID]:
    """Leases up to `limit` due deliveries (other than `exclude`) to `worker` (as `token`,
    one per claim unless given); returns their ids. An attempt still `sending` on a
    delivery taken over this way belonged to a worker that stopped: it becomes `unknown`."""
    token = token or new_token(worker)
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
        taken = select(Delivery.id).where(Delivery.leased_by == token)
        interrupted = session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(taken), DeliveryAttempt.outcome == "sending")
            .values(outcome="unknown", error=UNKNOWN_OUTCOME)
            .execution_options(synchronize_session=False)).rowcount
    if interrupted:
        log.warning("%d delivery attempt(s) of a stopped worker have an unknown outcome; sending again",
                    interrupted)
    with database.unit_of_work() as session:
        return list(session.scalars(select(Delivery.id).where(Delivery.leased_by == token)))


UNKNOWN_OUTCOME = ("outcome unknown: the worker stopped while sending; sent again with the same "
                   "webhook-id / Message-ID")


def new_token(worker: str) -> str:
    return f"{worker}#{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Renews the leases of the deliveries a worker still holds, every third of the
    lease, from a thread of its own (a slow receiver or SMTP server does not hold it up):
    a live worker keeps its batch, a dead one loses it within one lease."""

    def __init__(self, database: Database, lease: dt.timedelta, clock: Callable[[], dt.datetime] = utcnow):
        self.database, self.lease, self.clock = database, lease, clock
        self._held: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-leases", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.release_all()

    def hold(self, token: str, ids: list[uuid.UUID]) -> None:
        with self._lock:
            self._held.update(dict.fromkeys(ids, token))

    def done(self, delivery_id: uuid.UUID) -> None:
        with self._lock:
            self._held.pop(delivery_id, None)

    def _loop(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # the database may be away for a moment
                log.warning("could not renew delivery leases: %s", exc)

    def _by_token(self) -> dict[str, list[uuid.UUID]]:
        with self._lock:
            held = dict(self._held)
        by_token: dict[str, list[uuid.UUID]] = {}
        for delivery_id, token in held.items():
            by_token.setdefault(token, []).append(delivery_id)
        return by_token

    def renew(self) -> None:
        by_token = self._by_token()
        if not by_token:
            return
        with self.database.unit_of_work() as session:
            for token, ids in by_token.items():
                session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.leased_by == token)
                                .values(lease_until=self.clock() + self.lease)
                                .execution_options(synchronize_session=False))

    def release_all(self) -> None:
        """Gives back what was claimed but not attempted (a stopping worker): due again now."""
        by_token = self._by_token()
        if not by_token:
            return
        try:
            with self.database.unit_of_work() as session:
                for token, ids in by_token.items():
                    session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.leased_by == token)
                                    .values(lease_until=None, leased_by=None)
                                    .execution_options(synchronize_session=False))
        except Exception as exc:
            log.warning("could not give back %d leased deliveries (their leases expire): %s",
                        sum(map(len, by_token.values())), exc)
        with self._lock:
            self._held.clear()


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
            http_client=None, token: str | None = None) -> sender.Outcome | None:
    """One attempt for a claimed delivery: recorded as `sending` first, then with its
    outcome. With `token`, only while that lease still holds it (None otherwise)."""
    started = now or utcnow()
    with database.unit_of_work() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.status != "pending" or (token and delivery.leased_by != token):
            return None  # delivered meanwhile, or our lease ran out and another worker has it
        if delivery.attempts >= policy.max_attempts and session.scalar(
                select(DeliveryAttempt.outcome).where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.number.desc()).limit(1)) == "unknown":
            # Out of attempts, the last one ended with its worker: perhaps the delivery is
            # what kills them. (Attempts that failed normally were judged when recorded; a
            # requeued delivery gets its extra attempt.)
            delivery.status, delivery.lease_until, delivery.leased_by = "failed", None, None
            delivery.last_error = UNKNOWN_OUTCOME
            log.warning("delivery %s failed: %d attempts, the last ones of unknown outcome", delivery_id,
                        delivery.attempts)
            return None
        chatbot = session.get(Chatbot, delivery.chatbot_id)
        # The endpoint's current secret: after a rotation the retries verify with the new one.
        secret = chatbot.webhook_secret if chatbot else None
        number = delivery.attempts + 1
        attempt_id = uuid.uuid4()
        session.add(DeliveryAttempt(id=attempt_id, delivery_id=delivery.id, number=number, worker=worker,
                                    started_at=started, outcome="sending"))
        delivery.attempts = number
        session.flush()
        session.expunge(delivery)  # read by the sender below, outside the session
    # Sent with no transaction open: a slow receiver holds no locks and no connection.
    try:
        outcome = _send(delivery, secret, settings, http_client)
    except Exception as exc:  # a bug in sending must not stop the worker
        log.exception("delivery %s crashed", delivery_id)
        outcome = sender.Outcome(ok=False, error=f"internal: {type(exc).__name__}: {exc}"[:1000])
    now = now or utcnow()
    with database.unit_of_work() as session:
        attempt = session.get(DeliveryAttempt, attempt_id)
        if attempt is not None:  # what really happened, also over an `unknown` set meanwhile
            attempt.outcome = "delivered" if outcome.ok else "failed"
            attempt.ok, attempt.duration_ms = outcome.ok, outcome.duration_ms
            attempt.status_code, attempt.error = outcome.status_code, outcome.error
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            return outcome
        ours = token is None or delivery.leased_by == token
        if ours:
            delivery.lease_until, delivery.leased_by = None, None
        if outcome.ok:
            if delivery.status != "delivered":
                delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
        elif ours:  # a worker that took over meanwhile decides what comes next
            delivery.last_error = outcome.error
            if not outcome.retryable or number >= policy.max_attempts:
                delivery.status = "failed"
            else:
                delivery.next_attempt_at = now + policy.delay(number)
    log.info("delivery %s %s attempt %d: %s", delivery_id, delivery.channel, number,
             "ok" if outcome.ok else outcome.error)
    metrics.OUTBOX_ATTEMPTS.labels(delivery.channel, "delivered" if outcome.ok else "failed").inc()
    return outcome


def due_summary(database: Database, now: dt.datetime | None = None) -> tuple[int, float]:
    """(pending deliveries, seconds the oldest due one has waited, 0 when none is due)."""
    now = now or utcnow()
    with database.unit_of_work() as session:
        pending, oldest_due = session.execute(
            select(func.count(), func.min(case((Delivery.next_attempt_at <= now, Delivery.next_attempt_at))))
            .where(Delivery.status == "pending")).one()
    if oldest_due is None:
        return pending, 0.0
    if oldest_due.tzinfo is None:  # SQLite returns naive UTC from an aggregate
        oldest_due = oldest_due.replace(tzinfo=dt.UTC)
    return pending, max(0.0, (now - oldest_due).total_seconds())


def run_once(database: Database, settings: Settings, *, worker: str, now: dt.datetime | None = None,
             limit: int = 10, policy: RetryPolicy = RetryPolicy(), http_client=None,
             on_outcome: Callable[[uuid.UUID, sender.Outcome], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             lease_seconds: float = DEFAULT_LEASE_SECONDS) -> int:
    """Claims and attempts every due delivery (batch by batch); returns how many were tried.
    A stop request ends it after the delivery in flight; the rest of its batch is given back."""
    owned = http_client is None
    # One client (its TLS context and connection pool) for the whole run.
    http_client = http_client or sender.http_client()
    lease = dt.timedelta(seconds=lease_seconds)
    try:
        with LeaseKeeper(database, lease, clock=(lambda: now) if now else utcnow) as leases:
            return _run(database, settings, worker, now, limit, policy, http_client, on_outcome, should_stop,
                        lease, leases)
    finally:
        if owned:
            http_client.close()


def _run(database, settings, worker, now, limit, policy, http_client, on_outcome, should_stop, lease,
         leases: LeaseKeeper) -> int:
    tried = 0
    seen: set[uuid.UUID] = set()
    while not should_stop():
        token = new_token(worker)
        # One attempt per delivery and run, even when its retry is due at once.
        ids = claim(database, worker, now=now or utcnow(), limit=limit, lease=lease, exclude=seen, token=token)
        if not ids:
            return tried
        leases.hold(token, ids)
        for delivery_id in ids:
            if should_stop():
                return tried  # the rest is given back by the lease keeper
            seen.add(delivery_id)
            outcome = deliver(database, delivery_id, settings, worker=worker, now=now, policy=policy,
                              http_client=http_client, token=token)
            leases.done(delivery_id)
            if outcome is None:
                continue
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
