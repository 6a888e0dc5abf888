"""handlers/runtime/disconnect.py through the WSGI bridge: a handler thread that waits
sees its client leave, and the body stays readable after it started watching."""
from __future__ import annotations

import asyncio
import time

from handlers.runtime.disconnect import client_gone
from handlers.runtime.wsgi_bridge import QueuedWSGIMiddleware

SCOPE = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/", "raw_path": b"/",
         "root_path": "", "scheme": "http", "query_string": b"", "headers": [(b"content-length", b"5")],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


def waiting_app(outcome: dict, read_body_after_asking: bool, give_up_after: float = 20):
    """Waits, as an idempotency retry does, until its client is gone (or gives up)."""

    def app(environ, start_response):
        scope = environ["asgi.scope"]
        deadline = time.monotonic() + give_up_after
        outcome["first_check"] = client_gone(scope)
        if read_body_after_asking:
            outcome["body"] = environ["wsgi.input"].read()
        while not client_gone(scope) and time.monotonic() < deadline:
            time.sleep(0.01)
        outcome["gone"] = client_gone(scope)
        start_response("429 Too Many Requests", [("Content-Length", "0")])
        return [b""]

    return app


def run(app, leave: bool) -> list[dict]:
    sent: list[dict] = []

    async def main():
        left = asyncio.Event()
        messages = [{"type": "http.request", "body": b"hello", "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        task = asyncio.create_task(QueuedWSGIMiddleware(app, workers=1)(dict(SCOPE), receive, send))
        await asyncio.sleep(0.2)
        if leave:
            left.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    return sent


def test_a_waiting_handler_notices_its_client_leaving():
    outcome: dict = {}
    sent = run(waiting_app(outcome, read_body_after_asking=False), leave=True)
    assert outcome == {"first_check": False, "gone": True}
    assert sent[0]["status"] == 429


def test_the_body_is_still_read_after_watching_began():
    outcome: dict = {}
    run(waiting_app(outcome, read_body_after_asking=True), leave=True)
    assert outcome["body"] == b"hello" and outcome["gone"] is True


def test_a_client_that_stays_is_not_reported_gone():
    outcome: dict = {}
    run(waiting_app(outcome, read_body_after_asking=False, give_up_after=0.5), leave=False)
    assert outcome["gone"] is False
