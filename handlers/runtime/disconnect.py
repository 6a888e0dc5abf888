"""Whether the client of a request served by Flask is still there.

A handler's thread cannot await the ASGI `receive()`, which is where a disconnect shows.
`DisconnectWatch` stands in for the request's receive channel: the WSGI side reads
through it as before, and once the thread asks `gone()` (a request about to wait, say
for another request's idempotency claim), a task on the event loop takes over reading
the channel: the messages it reads are kept for the WSGI side in order, and
`http.disconnect` sets a flag that the thread checks between polls. Requests that never
ask cost nothing.
"""
from __future__ import annotations

import asyncio
import threading

from starlette.types import Message, Receive

STATE_KEY = "client_gone"


class DisconnectWatch:
    def __init__(self, receive: Receive, loop: asyncio.AbstractEventLoop):
        self._receive = receive
        self._loop = loop
        self._messages: asyncio.Queue | None = None  # set once the watcher reads the channel
        self._watcher: asyncio.Task | None = None
        self._asked = False
        self._gone = threading.Event()

    async def receive(self) -> Message:
        if self._messages is None:
            message = await self._receive()
        else:
            message = await self._messages.get()
            if message["type"] == "http.disconnect":
                self._messages.put_nowait(message)  # every later read says so too
        if message["type"] == "http.disconnect":
            self._gone.set()
        return message

    def gone(self) -> bool:
        """From the handler's thread (which is then not reading the body itself)."""
        if not self._asked:
            self._asked = True
            self._loop.call_soon_threadsafe(self._watch)
        return self._gone.is_set()

    def _watch(self) -> None:
        self._messages = asyncio.Queue()
        self._watcher = self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            message = await self._receive()
            self._messages.put_nowait(message)
            if message["type"] == "http.disconnect":
                self._gone.set()
                return

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


def client_gone(scope: dict) -> bool:
    """False when the request is not watched (not served through the bridge)."""
    watch = scope.get("state", {}).get(STATE_KEY)
    return watch.gone() if watch is not None else False
