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
