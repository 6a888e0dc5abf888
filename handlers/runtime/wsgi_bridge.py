"""Flask under the event loop: a2wsgi's bridge, with response messages handed over
without a round trip.

a2wsgi's worker thread hands each response message (status and headers, each body
chunk, the end) to the event loop and blocks until the loop has sent it. A request thus
holds its pool thread for three turns of a busy loop after the handler has returned:
with hundreds of chat streams open, the pool's threads spent about two thirds of their
time waiting there, and new turns queued behind them. Here the thread queues the
message and moves on; a semaphore still bounds how many messages of one response wait
unsent (a2wsgi's send queue size), so a large streamed body cannot outrun the socket.
"""
from __future__ import annotations

import asyncio
import threading

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder


class QueuedWSGIResponder(WSGIResponder):
    def __init__(self, app, executor, send_queue_size: int):
        super().__init__(app, executor, send_queue_size)
        self.send_queue = asyncio.Queue()  # bounded by `room`, which the thread waits on
        self.queue_size = send_queue_size
        self.room = threading.Semaphore(send_queue_size)
        self.broken = False  # the sender failed: later messages go nowhere

    def send(self, message) -> None:
        if self.broken:
            return
        self.room.acquire()
        self.loop.call_soon_threadsafe(self.send_queue.put_nowait, message)

    async def sender(self, send) -> None:
        try:
            while True:
                message = await self.send_queue.get()
                if message is None:
                    break
                try:
                    await send(message)
                finally:
                    self.room.release()
        except BaseException:
            # A thread blocked on a full queue must not wait for a sender that is gone.
            self.broken = True
            self.room.release(self.queue_size)
            raise


class QueuedWSGIMiddleware(WSGIMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            responder = QueuedWSGIResponder(self.app, self.executor, self.send_queue_size)
            return await responder(scope, receive, send)
        return await super().__call__(scope, receive, send)
