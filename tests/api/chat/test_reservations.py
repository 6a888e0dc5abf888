"""The sweep of reservations whose turn never ended (its worker died): from the outbox
worker's command, idempotent, and settled exactly once by concurrent sweepers."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import uuid

from sqlalchemy import update

from models import alpinechat, conversations, migrate
from models.chat import reservations
from models.config import ROOT
from models.conversations import Message
from models.db import Database, utcnow

from .conftest import PRICES, chat_config


def _principal(bot):
    return {"tenant_id": str(bot.tenant_id), "chatbot_id": None}


def _message(database, message_id) -> Message:
    with database.unit_of_work() as s:
        return s.get(Message, message_id)


def test_worker_once_settles_stale_reservations_and_leaves_running_ones(chat_engine, make_chatbot, database,
                                                                       settings):
    bot = make_chatbot(monthly_budget_usd=5.0)
    with database.unit_of_work() as s:
        stale = chat_engine.prepare(s, slug=bot.slug, principal=_principal(bot),
                                    request={"session_id": "sess-stale", "message": "Hallo"})
        running = chat_engine.prepare(s, slug=bot.slug, principal=_principal(bot),
                                      request={"session_id": "sess-running", "message": "Servus"})
    reserved = _message(database, stale.assistant_message_id)
    assert reserved.finish_reason is None and reserved.cost_usd == stale.reservation_usd > 0
    with database.unit_of_work() as s:  # its worker died a minute ago
        s.execute(update(Message).where(Message.id == stale.assistant_message_id)
                  .values(created_at=utcnow() - dt.timedelta(minutes=1)))

    # Stale after 30 s here (the sweepers of this run's live servers wait the default 180 s).
    env = {**os.environ, "DATABASE_URL": settings.database_url, "CHAT_PRICES": json.dumps(PRICES),
           "CHAT_RESERVATION_STALE_SECONDS": "30", "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "scripts.worker", "--once"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reservations_settled"] >= 1

    settled = _message(database, stale.assistant_message_id)
    expected = chat_config().prices.cost(stale.model, reserved.prompt_tokens, 0)
    assert (settled.finish_reason, settled.cost_usd, settled.completion_tokens) == (
        reservations.INTERRUPTED, expected, 0)
    assert settled.tool_payload == {"error": reservations.ERROR}
    still = _message(database, running.assistant_message_id)
    assert still.finish_reason is None and still.cost_usd == running.reservation_usd
    assert expected < stale.reservation_usd  # the budget gets the worst case back

    # Idempotent: a second sweep changes nothing it settled.
    reservations.sweep(database, chat_config(reservation_stale_seconds=30))
    again = _message(database, stale.assistant_message_id)
    assert (again.finish_reason, again.cost_usd) == (reservations.INTERRUPTED, expected)


def test_concurrent_sweepers_settle_each_reservation_once(fresh_database_url):
    migrate.upgrade(fresh_database_url)
    database = Database(fresh_database_url)
    try:
        with database.unit_of_work() as s:
            tenant = alpinechat.create_tenant(s, "Sweep", "a@example.com")
            bot = alpinechat.create_chatbot(s, tenant, "sweep-bot", "Sweep Bot")
            old = utcnow() - dt.timedelta(hours=1)
            ids = []
            for i in range(40):
                conversation = conversations.get_or_create_conversation(s, bot.id, f"sess-{i:04d}")
                conversations.add_message(s, conversation, "user", "Frage")
                ids.append(conversations.add_message(s, conversation, "assistant", "", model="stub-model",
                                                     cost_usd=1.5, prompt_tokens=1000, created_at=old).id)
        config = chat_config(sweep_interval_seconds=60)
        counts: list[int] = []
        barrier = threading.Barrier(4)

        def sweep():
            barrier.wait()
            counts.append(sum(reservations.sweep(database, config, limit=7) for _ in range(10)))

        threads = [threading.Thread(target=sweep) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(counts) == 40  # each settled by exactly one sweeper
        with database.unit_of_work() as s:
            rows = [s.get(Message, i) for i in ids]
            assert {(m.finish_reason, m.cost_usd) for m in rows} == {
                (reservations.INTERRUPTED, config.prices.cost("stub-model", 1000, 0))}
    finally:
        database.dispose()


def test_a_turn_ending_after_the_sweep_stores_what_really_happened(chat_engine, make_chatbot, database):
    bot = make_chatbot()
    with database.unit_of_work() as s:
        plan = chat_engine.prepare(s, slug=bot.slug, principal=_principal(bot),
                                   request={"session_id": f"sess-{uuid.uuid4().hex[:8]}", "message": "Hallo"})
        s.execute(update(Message).where(Message.id == plan.assistant_message_id)
                  .values(created_at=utcnow() - dt.timedelta(minutes=10)))
    reservations.sweep(database, chat_config())
    assert _message(database, plan.assistant_message_id).finish_reason == reservations.INTERRUPTED
    turn = chat_engine.turn(plan)
    turn.outcome.text = ["spät"]
    turn.outcome.finish = "stop"
    turn.finalize()  # a worker that was only slow, not dead: its own account wins
    late = _message(database, plan.assistant_message_id)
    assert (late.finish_reason, late.content) == ("stop", "spät") and late.tool_payload is None
