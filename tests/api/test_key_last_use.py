"""A key's last use: noted per request, written by a background flush at most once a minute."""
from __future__ import annotations

import datetime as dt

from models import alpinechat, wepeople
from models.db import Database
from models.key_usage import KeyUsage


class Clock:
    def __init__(self):
        self.now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    def __call__(self):
        return self.now


def _ingest_last_used(database, key_id):
    with database.unit_of_work() as session:
        return session.get(wepeople.IngestApiKey, key_id).last_used_at


def _chat_last_used(database, key_id):
    with database.unit_of_work() as session:
        return session.get(alpinechat.ChatApiKey, key_id).last_used_at


def test_requests_record_the_last_use_after_a_flush(app, client, database, make_ingest_key, make_chatbot):
    ingest, bot = make_ingest_key(), make_chatbot()
    usage = app.app.extensions["key_usage"]
    before = dt.datetime.now(dt.UTC)
    assert client.get("/api/v1/ingest/ping", headers=ingest.headers).status_code == 200
    assert client.get(f"/api/leads/{bot.slug}", headers=bot.headers).status_code == 200
    usage.flush()  # what the background thread does every minute
    assert _ingest_last_used(database, ingest.key_id) >= before - dt.timedelta(seconds=1)
    assert _chat_last_used(database, bot.key_id) >= before - dt.timedelta(seconds=1)


def test_a_refused_key_records_nothing(app, client, database, make_ingest_key):
    ingest = make_ingest_key(api_enabled=False)
    assert client.get("/api/v1/ingest/ping", headers=ingest.headers).status_code == 402
    app.app.extensions["key_usage"].flush()
    assert _ingest_last_used(database, ingest.key_id) is None


def test_at_most_one_write_a_minute_per_key_across_processes(settings, make_ingest_key):
    """Two recorders (two workers) share the database; the row changes once per minute."""
    key_id = make_ingest_key().key_id
    database = Database(settings.database_url)
    clock = Clock()
    one, two = KeyUsage(database, clock=clock), KeyUsage(database, clock=clock)
    try:
        one.note("wepeople", str(key_id))
        assert one.flush() == 1
        first = _ingest_last_used(database, key_id)
        assert first == clock.now

        clock.now += dt.timedelta(seconds=30)
        one.note("wepeople", str(key_id))  # this process wrote it 30 s ago: not even buffered
        assert one.flush() == 0
        two.note("wepeople", str(key_id))  # another process: the database's condition refuses it
        assert two.flush() == 0
        assert _ingest_last_used(database, key_id) == first

        clock.now += dt.timedelta(seconds=31)
        two.note("wepeople", str(key_id))
        assert two.flush() == 1
        assert _ingest_last_used(database, key_id) == clock.now
    finally:
        database.dispose()


def test_a_failed_flush_keeps_the_uses_for_the_next(settings, make_ingest_key):
    key_id = make_ingest_key().key_id
    broken = Database("sqlite:////nonexistent-dir/none.db")
    usage = KeyUsage(broken, clock=Clock())
    usage.note("wepeople", str(key_id))
    assert usage.flush() == 0  # logged, not raised
    database = Database(settings.database_url)
    try:
        usage.database = database  # the database is back
        assert usage.flush() == 1
        assert _ingest_last_used(database, key_id) == Clock()()
    finally:
        database.dispose()
        broken.dispose()
