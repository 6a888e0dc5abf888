"""handlers/runtime/wsgi_bridge.py: Flask's responses reach the socket in order, a large
streamed body is held to a few unsent messages, and a sender that fails never strands
the worker thread."""
from __future__ import annotations

import asyncio
import threading

import pytest

from handlers.runtime.wsgi_bridge import QueuedWSGIMiddleware

SCOPE = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "raw_path": b"/",
         "root_path": "", "scheme": "http", "query_string": b"", "headers": [],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


def streaming_app(chunks: int, progress: list, finished: threading.Event):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            for i in range(chunks):
                progress.append(i)
                yield f"{i};".encode()
        finally:
            finished.set()

    return app


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def test_messages_arrive_in_order_and_unsent_ones_stay_bounded():
    progress: list[int] = []
    finished = threading.Event()
    bridge = QueuedWSGIMiddleware(streaming_app(200, progress, finished), workers=2, send_queue_size=3)
    sent: list[dict] = []
    ahead: list[int] = []

    async def send(message):
        if message["type"] == "http.response.body" and message["body"]:
            # How far the worker thread got beyond what the socket has taken.
            ahead.append(len(progress) - int(message["body"].split(b";")[0]))
            await asyncio.sleep(0)
        sent.append(message)

    asyncio.run(bridge(SCOPE, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body == b"".join(f"{i};".encode() for i in range(200))
    assert sent[-1] == {"type": "http.response.body", "body": b""}
    assert finished.is_set()
    assert max(ahead) <= 4  # the send queue's 3, plus the chunk being produced


def test_a_failing_sender_releases_the_worker_thread():
    progress: list[int] = []
    finished = threading.Event()
    bridge = QueuedWSGIMiddleware(streaming_app(500, progress, finished), workers=1, send_queue_size=2)

    async def send(message):
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    with pytest.raises(OSError):
        asyncio.run(bridge(SCOPE, receive, send))
    # The thread ran the app to its end instead of waiting for room that never comes.
    assert finished.wait(5)
    assert len(progress) == 500


def test_a_sized_response_is_handed_over_in_one_piece():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "7")])
        return [b'{"a":', b"1}"]

    bridge = QueuedWSGIMiddleware(app, workers=1, send_queue_size=10)
    handovers: list[int] = []
    original = bridge.__class__.__call__

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def run():
        loop = asyncio.get_running_loop()
        schedule = loop.call_soon_threadsafe

        def counting(callback, *args):
            handovers.append(len(args[0]) if args and isinstance(args[0], list) else 0)
            return schedule(callback, *args)

        loop.call_soon_threadsafe = counting
        await original(bridge, SCOPE, receive, send)

    asyncio.run(run())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body",
                                         "http.response.body"]
    assert b"".join(m.get("body", b"") for m in sent) == b'{"a":1}'
    assert handovers.count(4) == 1  # start, both chunks and the end: one hand-over
