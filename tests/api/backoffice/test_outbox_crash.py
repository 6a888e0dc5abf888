"""The outbox when a delivery worker dies: real `scripts/worker` processes, a real HTTP
receiver that is slow to answer, SIGKILL in the middle of a delivery.

Each test has its own database (on each backend in use), so no other test's deliveries
are in the way of the workers.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from models import alpinechat, migrate, outbox
from models.config import ROOT, Settings
from models.db import Database, utcnow
from scripts.ports import free_port

LEASE = 1.0  # seconds; production default 30 (OUTBOX_LEASE_SECONDS)


class SlowReceiver:
    """Verifies the signature, acts once per webhook-id, and holds its answer to the
    first request until released (a slow receiver: the worker waits in the middle of
    the send)."""

    def __init__(self, secret_of):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.requests: list[str] = []  # webhook-ids in arrival order
        self.effects: dict[str, dict] = {}
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = Webhook(secret_of()).verify(body, headers)
                receiver.requests.append(headers["webhook-id"])
                receiver.effects.setdefault(headers["webhook-id"], payload)
                if len(receiver.requests) == 1:
                    receiver.first_arrived.set()
                    receiver.release.wait(60)
                try:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the worker is gone
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outbox_world(fresh_database_url):
    """A migrated database of its own, a chatbot whose webhook points at a slow receiver."""
    migrate.upgrade(fresh_database_url)
    database = Database(fresh_database_url)
    secret = {}
    receiver = SlowReceiver(lambda: secret["value"])
    with database.unit_of_work() as s:
        tenant = alpinechat.create_tenant(s, "Crash Tenant", "")  # no admin address: webhooks only
        bot = alpinechat.create_chatbot(s, tenant, "crash-bot", "Crash Bot")
        bot.webhook_url = receiver.url
        secret["value"] = alpinechat.ensure_webhook_secret(bot)
        chatbot_id = bot.id
    processes: list[subprocess.Popen] = []

    def queue(n=1) -> list:
        with database.unit_of_work() as s:
            chatbot = s.get(alpinechat.Chatbot, chatbot_id)
            return [d.id for i in range(n) for d in outbox.notify(
                s, chatbot, "lead.created", {"email": f"gast{i}@example.com"}, subject="Lead", text="Lead")]

    def worker(name: str) -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": fresh_database_url, "WEBHOOK_ALLOW_PRIVATE": "true",
               "OUTBOX_LEASE_SECONDS": str(LEASE), "LOG_LEVEL": "INFO"}
        process = subprocess.Popen([sys.executable, "-m", "scripts.worker", "--interval", "0.2", "--worker-id", name],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    world = dataclasses.make_dataclass("World", ["database", "receiver", "queue", "worker", "url"])(
        database, receiver, queue, worker, fresh_database_url)
    yield world
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    receiver.stop()
    database.dispose()


def _attempts(database, delivery_id):
    with database.unit_of_work() as s:
        delivery = s.get(outbox.Delivery, delivery_id)
        attempts = [(a.number, a.worker, a.outcome, a.ok, a.duration_ms, a.error)
                    for a in outbox.attempts_of(s, delivery_id)]
        return delivery.status, delivery.leased_by, attempts


def _wait(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, message
        time.sleep(0.1)
    return result


def test_killed_worker_mid_delivery_is_taken_over_and_its_attempt_is_unknown(outbox_world):
    world = outbox_world
    (delivery_id,) = world.queue()
    first = world.worker("worker-a")
    assert world.receiver.first_arrived.wait(60), "worker-a never sent"
    # Recorded before sending: the attempt is in the database while the receiver holds it.
    status, leased_by, attempts = _attempts(world.database, delivery_id)
    assert status == "pending" and leased_by.startswith("worker-a#")
    assert attempts == [(1, "worker-a", "sending", None, None, None)]
    # A live worker keeps its lease past its length (renewed while it waits on the receiver).
    time.sleep(LEASE * 2.5)
    assert outbox.claim(world.database, "probe", now=utcnow(), lease=dt.timedelta(seconds=LEASE)) == []

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    world.receiver.release.set()  # the receiver has acted; its answer reaches nobody
    world.worker("worker-b")
    # Taken over once the lease runs out (production: 30 s), sent again with the same webhook-id.
    _wait(lambda: _attempts(world.database, delivery_id)[0] == "delivered", 30,
          "worker-b did not take the delivery over")
    status, leased_by, attempts = _attempts(world.database, delivery_id)
    assert leased_by is None
    assert [a[:5] for a in attempts] == [(1, "worker-a", "unknown", None, None),
                                        (2, "worker-b", "delivered", True, attempts[1][4])]
    assert "unknown" in attempts[0][5]
    webhook_id = f"msg_{delivery_id.hex}"
    assert world.receiver.requests == [webhook_id, webhook_id]  # a repeat the receiver
    assert list(world.receiver.effects) == [webhook_id]  # deduplicates on webhook-id


def test_a_stopping_worker_gives_back_the_rest_of_its_batch(outbox_world):
    world = outbox_world
    ids = world.queue(3)
    settings = dataclasses.replace(Settings.from_env({}), database_url=world.url, webhook_allow_private=True)
    world.receiver.release.set()
    done: list = []
    tried = outbox.run_once(world.database, settings, worker="stopping", lease_seconds=60,
                            on_outcome=lambda delivery_id, _: done.append(delivery_id),
                            should_stop=lambda: bool(done))
    assert tried == 1 and done[0] in ids
    with world.database.unit_of_work() as s:
        rest = s.scalars(select(outbox.Delivery).where(outbox.Delivery.id.in_(set(ids) - set(done)))).all()
        # Not held for the 60 s lease: due again for any worker now.
        assert [(d.status, d.leased_by, d.lease_until, d.attempts) for d in rest] == [("pending", None, None, 0)] * 2
    assert len(outbox.claim(world.database, "next", now=utcnow())) == 2


def test_a_delivery_whose_workers_keep_dying_fails_after_its_attempts(outbox_world):
    world = outbox_world
    policy = outbox.RetryPolicy(max_attempts=3)
    settings = dataclasses.replace(Settings.from_env({}), database_url=world.url, webhook_allow_private=True)
    world.receiver.release.set()
    poison, requeued = world.queue(2)
    with world.database.unit_of_work() as s:
        for delivery_id, outcome in ((poison, "unknown"), (requeued, "failed")):
            s.get(outbox.Delivery, delivery_id).attempts = 3
            for number in (1, 2, 3):
                s.add(outbox.DeliveryAttempt(delivery_id=delivery_id, number=number, worker="gone",
                                             started_at=utcnow(), outcome=outcome))
    outbox.run_once(world.database, settings, worker="w", policy=policy)
    assert _attempts(world.database, poison)[0] == "failed"  # not sent a fourth time
    assert world.receiver.requests == [f"msg_{requeued.hex}"]  # a requeued one gets its extra attempt
    status, _, attempts = _attempts(world.database, requeued)
    assert status == "delivered" and attempts[-1][:3] == (4, "w", "delivered")
