"""Redis is never a single point of failure: with the limiter's Redis down or frozen
(SIGSTOP), ingest, chat and the back office keep being served with limits counted per
process, the health probe says `degraded`, and once Redis answers again the limits are
shared again, by themselves. The Redis here is the test's own, never the shared one."""
from __future__ import annotations

import dataclasses
import logging
import time

import pytest

from handlers.runtime.app import create_app
from tests.api.chat.conftest import parse_sse
from tests.api.wepeople.helpers import EVENTS, event
from tests.throwaway_redis import needs_redis_server, throwaway_redis  # noqa: F401 (fixture)


def escalate(client, bot):
    return client.post(f"/api/escalate/{bot.slug}", json={"email": "gast@example.com", "message": "Bitte melden"},
                       headers=bot.headers)


def healthz(client):
    response = client.get("/api/healthz")
    return response.status_code, response.json()


@needs_redis_server
@pytest.mark.parametrize("fault", ["down", "frozen"])
def test_served_while_redis_fails_then_shared_again(settings, database, throwaway_redis, make_ingest_key,
                                                    make_chatbot, caplog, fault):
    caplog.set_level(logging.INFO)
    # Two apps on one Redis stand for two server processes (each has its own memory).
    outage = dataclasses.replace(settings, redis_url=throwaway_redis.url, redis_retry_seconds=0.2)
    one_app, two_app = create_app(outage, database=database), create_app(outage, database=database)
    made, bot, fresh_bot = make_ingest_key(), make_chatbot(), make_chatbot()
    with one_app.test_client() as one, two_app.test_client() as two:
        status, report = healthz(one)
        assert (status, report["status"], report["errors"]) == (200, "ok", [])

        if fault == "down":
            throwaway_redis.stop()
        else:
            throwaway_redis.freeze()

        for client in (one, two):
            ingest = client.post(EVENTS, json={"events": [event(1)]}, headers=made.headers)
            assert ingest.status_code == 202, ingest.text
            assert ingest.headers["X-RateLimit-Remaining"].isdigit()
        chat = one.post(f"/api/chat/{bot.slug}", json={"session_id": "outage", "message": "Hallo"},
                        headers=bot.headers)
        assert chat.status_code == 200 and chat.headers["content-type"].startswith("text/event-stream")
        events, _ = parse_sse(chat.text)
        assert [e["type"] for e in events][-2:] == ["finish", "done"] and events[-2]["reason"] == "stop"
        # Limits still hold, per process: this IP's 3 escalations per hour, then 429.
        assert [escalate(one, bot).status_code for _ in range(4)] == [201, 201, 201, 429]

        status, report = healthz(one)
        assert status == 503 and report["status"] == "degraded"
        assert [e for e in report["errors"] if e.startswith("redis:")], report

        if fault == "down":
            throwaway_redis.start()  # same port, empty
        else:
            throwaway_redis.thaw()
        deadline = time.monotonic() + 15  # a bound, not a measurement: the cool-down is 0.2 s
        while healthz(one)[0] != 200 or healthz(two)[0] != 200:
            assert time.monotonic() < deadline, "the health probe never saw Redis again"
            time.sleep(0.05)
        assert healthz(one)[1]["status"] == "ok"

        # Shared again: the two processes count one window.
        assert [escalate(c, fresh_bot).status_code for c in (one, two, one, two)] == [201, 201, 201, 429]

    lines = [r.getMessage() for r in caplog.records if r.name == "ratelimit"]
    assert sum(line.startswith("Redis unreachable") for line in lines) == 2  # once per process
    assert lines.count("Redis answers again: rate limits are shared again") == 2
    assert not [r for r in caplog.records if r.exc_info], "no traceback per request"
