"""Retention jobs (models/retention.py) on a database of their own, on each backend in use,
and through `scripts/worker --once` as operators run it."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, select

from models import alpinechat, migrate
from models.config import ROOT
from models.db import Database, utcnow
from models.ingest_idempotency import IdempotencyRecord
from models.outbox import Delivery, DeliveryAttempt
from models.retention import RetentionJobs, RetentionPolicy, prune_delivered_outbox, purge_idempotency_records

NOW = utcnow()
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def database(fresh_database_url):
    migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    yield db
    db.dispose()


def add_record(session, key: str, *, expires_in: dt.timedelta, finished: bool, lease_in: dt.timedelta | None = None):
    session.add(IdempotencyRecord(
        owner="key-1", idempotency_key=key, request_hash="0" * 64, status=200 if finished else None,
        headers={} if finished else None, body=b"{}" if finished else None, created_at=NOW - 25 * HOUR,
        expires_at=NOW + expires_in, claim_token=None if finished else uuid.uuid4().hex,
        lease_until=None if finished or lease_in is None else NOW + lease_in))


def keys_left(database) -> set[str]:
    with database.unit_of_work() as session:
        return set(session.scalars(select(IdempotencyRecord.idempotency_key)))


def test_expired_idempotency_records_are_purged_in_batches_and_live_claims_kept(database):
    with database.unit_of_work() as session:
        for n in range(5):
            add_record(session, f"done-expired-{n}", expires_in=-HOUR, finished=True)
        add_record(session, "done-in-window", expires_in=HOUR, finished=True)
        add_record(session, "abandoned-expired", expires_in=-HOUR, finished=False, lease_in=-HOUR)
        # Past its window but its owner still renews the lease: someone is working on it.
        add_record(session, "working-expired", expires_in=-HOUR, finished=False, lease_in=HOUR)

    assert purge_idempotency_records(database, now=NOW, batch_size=2) == 6
    assert keys_left(database) == {"done-in-window", "working-expired"}
    assert purge_idempotency_records(database, now=NOW, batch_size=2) == 0


def add_delivery(session, bot, *, status: str, delivered_ago: dt.timedelta | None, attempts: int = 1) -> uuid.UUID:
    delivery = Delivery(tenant_id=bot.tenant_id, chatbot_id=bot.id, channel="webhook", event_type="lead.created",
                        target="http://127.0.0.1:9/hook", payload={"n": 1}, status=status, attempts=attempts,
                        delivered_at=None if delivered_ago is None else NOW - delivered_ago)
    session.add(delivery)
    session.flush()
    for number in range(1, attempts + 1):
        session.add(DeliveryAttempt(delivery_id=delivery.id, number=number, worker="w", started_at=NOW - 50 * 24 * HOUR,
                                    outcome="delivered" if status == "delivered" else "failed"))
    return delivery.id


def test_old_delivered_outbox_rows_are_pruned_with_their_attempts(database):
    with database.unit_of_work() as session:
        tenant = alpinechat.create_tenant(session, "retention-tenant", "admin@example.com")
        bot = alpinechat.create_chatbot(session, tenant, "retention-bot", "Bot")
        old = [add_delivery(session, bot, status="delivered", delivered_ago=40 * 24 * HOUR, attempts=2)
               for _ in range(3)]
        recent = add_delivery(session, bot, status="delivered", delivered_ago=24 * HOUR)
        dead = add_delivery(session, bot, status="failed", delivered_ago=None, attempts=3)
        pending = add_delivery(session, bot, status="pending", delivered_ago=None, attempts=0)

    assert prune_delivered_outbox(database, keep=dt.timedelta(days=30), now=NOW, batch_size=2) == 3
    with database.unit_of_work() as session:
        assert set(session.scalars(select(Delivery.id))) == {recent, dead, pending}
        assert session.scalar(select(func.count()).select_from(DeliveryAttempt)
                              .where(DeliveryAttempt.delivery_id.in_(old))) == 0
        assert session.scalar(select(func.count()).select_from(DeliveryAttempt)) == 1 + 3


def test_jobs_run_on_their_interval_and_can_be_switched_off(database):
    clock = [100.0]
    with database.unit_of_work() as session:
        add_record(session, "done-expired", expires_in=-HOUR, finished=True)
    jobs = RetentionJobs(database, RetentionPolicy(interval_seconds=60, outbox_keep_days=0), clock=lambda: clock[0])
    assert jobs.due()
    assert jobs.run() == {"idempotency_records_purged": 1}  # outbox pruning is off
    assert not jobs.due()
    clock[0] += 60
    assert jobs.due() and jobs.run() == {"idempotency_records_purged": 0}
    assert jobs.totals["idempotency_records_purged"] == 1
    assert not RetentionJobs(database, RetentionPolicy(interval_seconds=0)).due()


def test_a_job_whose_database_is_away_is_retried_next_time(tmp_path):
    unreachable = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'none.db'}")
    jobs = RetentionJobs(unreachable, RetentionPolicy(interval_seconds=60))
    assert jobs.run() == {}
    assert jobs.totals == {"idempotency_records_purged": 0, "outbox_deliveries_pruned": 0}


def test_the_worker_runs_retention_and_reports_it(database, fresh_database_url):
    with database.unit_of_work() as session:
        add_record(session, "done-expired", expires_in=-HOUR, finished=True)
        add_record(session, "done-in-window", expires_in=HOUR, finished=True)
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "scripts.worker", "--once"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["idempotency_records_purged"] == 1
    assert keys_left(database) == {"done-in-window"}
