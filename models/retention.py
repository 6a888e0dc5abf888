"""Retention: what the delivery worker (scripts/worker) deletes so tables stop growing.

- Idempotency records past their replay window (`expires_at`), finished or abandoned:
  a retry after the window is a new request anyway.
- Outbox deliveries that were delivered longer ago than `outbox_keep_days`, with their
  attempts. Failed deliveries stay until an operator requeues or removes them.

Each job deletes in batches, one short transaction per batch, so it never holds locks
for long nor competes with requests for more than one batch at a time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, select

from models import ingest_idempotency, metrics
from models.config import Settings
from models.db import Database, utcnow
from models.ingest_idempotency import IdempotencyRecord
from models.outbox import Delivery, DeliveryAttempt

log = logging.getLogger("retention")


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    # Seconds between runs of the retention jobs in scripts/worker (0: never).
    interval_seconds: float = 300.0
    # Rows deleted per transaction.
    batch_size: int = 1000
    # Days a delivered outbox row (and its attempts) is kept for inspection (0: forever).
    outbox_keep_days: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(settings.retention_interval_seconds, settings.retention_batch_size, settings.outbox_keep_days)


def purge_idempotency_records(database: Database, *, now: dt.datetime | None = None,
                              batch_size: int = 1000) -> int:
    """Deletes records past their replay window, batch by batch. An unfinished claim is
    deleted only once its lease has lapsed too: nobody is still working on it."""
    expired = ingest_idempotency.expired(now or utcnow())
    return _delete_in_batches(database, IdempotencyRecord, expired, batch_size)


def prune_delivered_outbox(database: Database, *, keep: dt.timedelta, now: dt.datetime | None = None,
                           batch_size: int = 1000) -> int:
    """Deletes deliveries delivered before `now - keep`, with their attempts."""
    cutoff = (now or utcnow()) - keep
    old = (Delivery.status == "delivered") & (Delivery.delivered_at <= cutoff)
    return _delete_in_batches(database, Delivery, old, batch_size,
                              children=[(DeliveryAttempt, DeliveryAttempt.delivery_id)])


def _delete_in_batches(database: Database, table, condition, batch_size: int, children=()) -> int:
    deleted = 0
    while True:
        with database.unit_of_work() as session:
            ids = list(session.scalars(select(table.id).where(condition).limit(batch_size)))
            if not ids:
                return deleted
            # Children first: bulk deletes bypass ORM cascades, and SQLite enforces keys.
            for child, foreign_key in children:
                session.execute(delete(child).where(foreign_key.in_(ids)))
            session.execute(delete(table).where(table.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


@dataclasses.dataclass
class RetentionJobs:
    """The worker's retention jobs, run every `policy.interval_seconds`; counts what each
    deleted since start (scripts/worker prints them)."""
    database: Database
    policy: RetentionPolicy
    clock: Callable[[], float] = time.monotonic
    totals: dict[str, int] = dataclasses.field(default_factory=lambda: {
        "idempotency_records_purged": 0, "outbox_deliveries_pruned": 0})
    _next_run: float = 0.0

    def due(self) -> bool:
        return self.policy.interval_seconds > 0 and self.clock() >= self._next_run

    def run(self) -> dict[str, int]:
        """Runs every job once; a job that fails (the database is away) is retried next time."""
        self._next_run = self.clock() + self.policy.interval_seconds
        ran: dict[str, int] = {}
        jobs = {"idempotency_records_purged": lambda: purge_idempotency_records(
            self.database, batch_size=self.policy.batch_size)}
        if self.policy.outbox_keep_days > 0:
            jobs["outbox_deliveries_pruned"] = lambda: prune_delivered_outbox(
                self.database, keep=dt.timedelta(days=self.policy.outbox_keep_days),
                batch_size=self.policy.batch_size)
        for name, job in jobs.items():
            try:
                ran[name] = job()
            except Exception as exc:
                log.warning("retention job %s failed: %s", name, exc)
                metrics.RETENTION_RUNS.labels(name, "failed").inc()
                continue
            metrics.RETENTION_RUNS.labels(name, "ok").inc()
            metrics.RETENTION_DELETED.labels(name).inc(ran[name])
            self.totals[name] += ran[name]
            if ran[name]:
                log.info("retention: %s %d", name, ran[name])
        return ran
