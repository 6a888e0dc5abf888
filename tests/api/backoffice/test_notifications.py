"""Lead and escalation notifications end to end: the outbox written with the lead, the
worker delivering to a real SMTP server and a real HTTP receiver that verifies the
Standard Webhooks signature, retries with backoff while either is down, no duplicate
effect for a receiver that deduplicates on webhook-id, the SSRF guard, and the admin
CLI's view of deliveries."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

from models import outbox
from models.config import ROOT
from models.db import utcnow

LATER = dt.timedelta(minutes=2)


def post_lead(client, bot, **fields):
    response = client.post(f"/api/lead/{bot.slug}", json={"email": "gast@example.com", **fields},
                           headers=bot.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_lead_mails_the_admin_and_fires_a_signed_webhook(client, make_bot, receiver, smtp_server, run_worker,
                                                          deliveries):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    assert bot.webhook_secret.startswith("whsec_")
    lead = post_lead(client, bot, name="Anna Gast", phone="+43 660 1")
    queued = deliveries(bot.chatbot_id)
    assert [(d.channel, d.event_type, d.status) for d in queued] == [
        ("email", "lead.created", "pending"), ("webhook", "lead.created", "pending")]

    run_worker()

    mails = smtp_server.to(bot.admin_email)
    assert len(mails) == 1
    assert "gast@example.com" in mails[0].subject and "Anna Gast" in mails[0].body
    assert mails[0].mail_from == "alpinechat@example.org"
    assert receiver.rejected == 0 and len(receiver.effects) == 1
    (webhook_id, event), = receiver.effects.items()
    assert event["type"] == "lead.created"
    assert event["data"]["id"] == lead["id"] and event["data"]["email"] == "gast@example.com"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(receiver.requests[0])
    done = deliveries(bot.chatbot_id)
    assert [(d.status, d.attempts) for d in done] == [("delivered", 1), ("delivered", 1)]
    webhook = done[1]
    assert webhook.webhook_id == webhook_id
    assert [(a.ok, a.status_code) for a in webhook.log] == [(True, 204)]
    assert [(a.ok, a.status_code) for a in done[0].log] == [(True, 250)]
    # Nothing left to do: a second run sends nothing again.
    run_worker()
    assert len(smtp_server.to(bot.admin_email)) == 1 and len(receiver.requests) == 1


def test_escalation_mails_and_fires_escalation_created(client, make_bot, receiver, smtp_server, run_worker):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    response = client.post(f"/api/escalate/{bot.slug}", headers=bot.headers,
                           json={"email": "gast@example.com", "message": "Bitte um Rückruf", "topic": "Buchung"})
    assert response.status_code == 201
    run_worker()
    (event,) = receiver.effects.values()
    assert event["type"] == "escalation.created"
    assert event["data"]["id"] == response.json()["id"] and event["data"]["status"] == "open"
    (mail,) = smtp_server.to(bot.admin_email)
    assert "Buchung" in mail.subject and "Bitte um Rückruf" in mail.body


def test_nothing_is_lost_while_receiver_and_mail_server_are_down(client, make_bot, receiver, smtp_server,
                                                                 run_worker, deliveries):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    receiver.stop()
    smtp_server.stop()
    started = time.monotonic()
    lead = post_lead(client, bot)
    # An unreachable receiver never slows down or fails the request itself.
    assert time.monotonic() - started < 5
    assert client.get(f"/api/leads/{bot.slug}", headers=bot.headers).json()["data"][0]["id"] == lead["id"]

    run_worker()
    failed = deliveries(bot.chatbot_id)
    assert [(d.status, d.attempts) for d in failed] == [("pending", 1), ("pending", 1)]
    assert all(d.log[0].error and not d.log[0].ok for d in failed)

    # Backoff: right away nothing is due again.
    run_worker()
    assert [d.attempts for d in deliveries(bot.chatbot_id)] == [1, 1]

    receiver.start()
    smtp_server.start()
    run_worker(later=LATER)
    assert [(d.status, d.attempts) for d in deliveries(bot.chatbot_id)] == [("delivered", 2), ("delivered", 2)]
    assert len(smtp_server.to(bot.admin_email)) == 1
    assert [e["data"]["id"] for e in receiver.effects.values()] == [lead["id"]]


def test_redelivery_after_a_lost_ack_has_no_duplicate_effect(client, make_bot, receiver, run_worker, deliveries):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    receiver.lose_acks = 1
    post_lead(client, bot)
    run_worker()
    run_worker(later=LATER)
    ids = [r["webhook-id"] for r in receiver.requests]
    assert len(ids) == 2 and ids[0] == ids[1]
    # Each attempt is signed afresh (its own timestamp) and verifies.
    assert receiver.rejected == 0
    assert len(receiver.effects) == 1
    webhook = next(d for d in deliveries(bot.chatbot_id) if d.channel == "webhook")
    assert [(a.ok, a.status_code) for a in webhook.log] == [(False, 503), (True, 204)]


def test_backoff_doubles_and_gives_up_after_max_attempts(client, make_bot, receiver, run_worker, deliveries,
                                                         database):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    receiver.fail_next = 100
    post_lead(client, bot)
    policy = outbox.RetryPolicy(max_attempts=3, base_seconds=60, cap_seconds=3600)
    with database.unit_of_work() as s:
        webhook_id = next(d.id for d in outbox.list_deliveries(s, chatbot_id=bot.chatbot_id) if d.channel == "webhook")

    def next_due():
        with database.unit_of_work() as s:
            d = s.get(outbox.Delivery, webhook_id)
            return d.status, d.attempts, d.next_attempt_at

    t0 = utcnow()
    run_worker(policy=policy)
    status, attempts, due = next_due()
    assert (status, attempts) == ("pending", 1) and 55 <= (due - t0).total_seconds() <= 70
    run_worker(later=dt.timedelta(seconds=61), policy=policy)
    status, attempts, due = next_due()
    assert (status, attempts) == ("pending", 2) and 175 <= (due - t0).total_seconds() <= 190  # 61 s + 2 min
    run_worker(later=dt.timedelta(seconds=182), policy=policy)
    assert next_due()[:2] == ("failed", 3)
    run_worker(later=dt.timedelta(days=1), policy=policy)
    assert next_due()[:2] == ("failed", 3)
    assert len(receiver.requests) == 3


def test_private_targets_are_refused_by_default(client, make_bot, receiver, run_worker, worker_settings,
                                                deliveries):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    post_lead(client, bot)
    run_worker(settings=dataclasses.replace(worker_settings, webhook_allow_private=False))
    webhook = next(d for d in deliveries(bot.chatbot_id) if d.channel == "webhook")
    # Refused without a request, and not retried: the target itself is the problem.
    assert receiver.requests == []
    assert webhook.status == "failed" and "refused" in webhook.log[0].error
    assert "127.0.0.1" in webhook.last_error


def test_two_workers_never_claim_the_same_delivery(client, make_bot, database):
    bot = make_bot()
    for i in range(5):
        post_lead(client, bot, email=f"w{i}@example.com")
    ours = {d.id for d in _pending(database, bot.chatbot_id)}
    assert len(ours) == 5
    now = utcnow() + dt.timedelta(days=3650)  # ahead of every other test's deliveries
    claims: dict[str, list] = {}
    barrier = threading.Barrier(2)

    def work(name):
        barrier.wait()
        claims[name] = outbox.claim(database, name, now=now, limit=1000)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = set(claims["a"]), set(claims["b"])
    assert not a & b
    assert ours <= a | b
    # A lease that runs out (its worker died) makes the delivery claimable again.
    assert outbox.claim(database, "c", now=now, limit=1000) == []
    again = set(outbox.claim(database, "c", now=now + dt.timedelta(hours=1), limit=1000))
    assert ours <= again


def _pending(database, chatbot_id):
    with database.unit_of_work() as s:
        return [d for d in outbox.list_deliveries(s, chatbot_id=chatbot_id, limit=1000) if d.status == "pending"]


def test_worker_script_and_admin_cli_show_deliveries(client, make_bot, receiver, smtp_server, settings,
                                                     deliveries):
    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    receiver.fail_next = 1
    post_lead(client, bot)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "SMTP_HOST": "127.0.0.1",
           "SMTP_PORT": str(smtp_server.port), "WEBHOOK_ALLOW_PRIVATE": "true", "LOG_LEVEL": "WARNING"}

    def run(*args):
        result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    summary = run("scripts.worker", "--once", "--backoff", "0.01")
    assert summary["attempted"] >= 2 and summary["failed_attempts"] >= 1
    webhook = next(d for d in deliveries(bot.chatbot_id) if d.channel == "webhook")
    assert (webhook.status, webhook.attempts) == ("pending", 1)
    time.sleep(0.05)
    run("scripts.worker", "--once")
    listed = run("scripts.admin", "delivery", "list", "--chatbot", bot.slug, "--json")
    assert {(d["channel"], d["status"]) for d in listed} == {("email", "delivered"), ("webhook", "delivered")}
    shown = run("scripts.admin", "delivery", "show", "--id", str(webhook.id), "--json")
    assert [(a["number"], a["ok"], a["status_code"]) for a in shown["attempt_log"]] == [(1, False, 503), (2, True, 204)]
    assert all(isinstance(a["duration_ms"], int) for a in shown["attempt_log"])
    assert len(receiver.effects) == 1 and len(smtp_server.to(bot.admin_email)) == 1


def test_failed_delivery_can_be_retried_from_the_cli(client, make_bot, receiver, run_worker, deliveries,
                                                     database):
    from scripts import admin_backoffice

    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    receiver.fail_next = 1
    post_lead(client, bot)
    run_worker(policy=outbox.RetryPolicy(max_attempts=1))
    webhook = next(d for d in deliveries(bot.chatbot_id) if d.channel == "webhook")
    assert webhook.status == "failed"
    with database.unit_of_work() as s:
        row = admin_backoffice.cmd_delivery_retry(s, type("Args", (), {"id": webhook.id})).data
    assert row["status"] == "pending"
    run_worker()
    webhook = next(d for d in deliveries(bot.chatbot_id) if d.channel == "webhook")
    assert (webhook.status, webhook.attempts) == ("delivered", 2)
    assert len(receiver.effects) == 1


def test_worker_loop_delivers_as_leads_arrive_and_stops_on_sigterm(client, make_bot, receiver, smtp_server,
                                                                   settings, deliveries):
    import signal

    bot = make_bot(webhook_url=receiver.url)
    receiver.secret = bot.webhook_secret
    env = {**os.environ, "DATABASE_URL": settings.database_url, "SMTP_HOST": "127.0.0.1",
           "SMTP_PORT": str(smtp_server.port), "WEBHOOK_ALLOW_PRIVATE": "true", "LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen([sys.executable, "-m", "scripts.worker", "--interval", "0.2"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        post_lead(client, bot)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {d.status for d in deliveries(bot.chatbot_id)} != {"delivered"}:
            time.sleep(0.1)
        assert {d.status for d in deliveries(bot.chatbot_id)} == {"delivered"}
        assert len(receiver.effects) == 1 and len(smtp_server.to(bot.admin_email)) == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
