"""Every use of a dependency's private API, in one place.

Each function or class here leans on something its dependency does not promise: an
attribute, a subclassed internal, a scope key. tests/unit/test_adapters.py checks each
assumption against the installed versions and names the dependency, its version and
this module when one breaks, so that widening a pin in setup.cfg is a matter of running
that test. (handlers/runtime/http_protocol.py subclasses uvicorn's httptools protocol;
its assumptions are checked by the same test.)

- connexion: the routing result in the scope (`ROUTING_CONTEXT`), the security result in
  the scope (`connexion_context`), and the ASGI bridge of `FlaskApp`
  (`_middleware_app.asgi_app`).
- a2wsgi: `WSGIResponder`'s `send`/`sender`/`loop`/`send_queue` (QueuedWSGIResponder),
  and the bridge's thread pool (`WSGIMiddleware.executor`), which operations run without
  Flask share (`QueuedWSGIMiddleware.run_in_pool`).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder
from connexion.middleware.abstract import ROUTING_CONTEXT

from handlers.runtime.disconnect import STATE_KEY, DisconnectWatch


# ── connexion ────────────────────────────────────────────────────────────────
def routed_operation_id(scope: dict) -> str | None:
    """What connexion's RoutingMiddleware resolved the request to (the name our resolver
    gave the operation); None before routing or when no operation matched."""
    routing = scope.get("extensions", {}).get(ROUTING_CONTEXT)
    return routing.get("operation_id") if routing else None


def verified_principal(scope: dict) -> dict | None:
    """What connexion's SecurityMiddleware verified (our bearer handler's principal): it
    keeps it in the scope, which connexion's `context` reads inside Flask."""
    return scope.get("extensions", {}).get("connexion_context", {}).get("token_info")


def install_wsgi_bridge(app, bridge) -> None:
    """Replaces the a2wsgi bridge connexion's FlaskApp runs Flask under."""
    app._middleware_app.asgi_app = bridge


def wsgi_bridge_of(app):
    return app._middleware_app.asgi_app


# ── a2wsgi ───────────────────────────────────────────────────────────────────
# Flask under the event loop: a2wsgi's bridge, with the response handed over in one
# piece and without waiting.
#
# a2wsgi's worker thread hands each response message (status and headers, each body
# chunk, the end) to the event loop separately and blocks until the loop has sent it. A
# request thus held its pool thread for three turns of a busy loop after the handler had
# returned: with hundreds of chat streams open, the pool's threads spent about two thirds
# of their time waiting there, and new turns queued behind them. Here the thread holds
# the messages of a response until its body is complete (by its Content-Length; a body
# without one goes chunk by chunk, as streamed), hands them over in one call and moves
# on. A semaphore still bounds how many hand-overs of one response wait unsent (a2wsgi's
# send queue size), so a large streamed body cannot outrun the socket.
class QueuedWSGIResponder(WSGIResponder):
    def __init__(self, app, executor, send_queue_size: int):
        super().__init__(app, executor, send_queue_size)
        self.send_queue = asyncio.Queue()  # bounded by `room`, which the thread waits on
        self.queue_size = send_queue_size
        self.room = threading.Semaphore(send_queue_size)
        self.broken = False  # the sender failed: later messages go nowhere
        self.held: list[dict] = []  # messages of this response not yet handed over
        self.unsent: int | None = None  # of the declared Content-Length

    def send(self, message) -> None:
        if self.broken:
            return
        held = self.held
        held.append(message)
        if message["type"] == "http.response.start":
            headers = message["headers"]
            for name, value in headers:
                if name == b"content-length" and value.isdigit():
                    self.unsent = int(value)
            if any(name == b"date" for name, _ in headers):
                # The server (uvicorn) writes Date on every response; werkzeug writes one
                # too on conditional answers (ETag, files): two Date headers.
                message["headers"] = [(name, value) for name, value in headers if name != b"date"]
            return  # goes with the body
        if message.get("more_body") and self.unsent is not None:
            self.unsent -= len(message.get("body", b""))
            if len(held) < self.queue_size:
                return  # the rest of a sized body, or its end, follows
        self.held = []
        self.room.acquire()
        self.loop.call_soon_threadsafe(self.send_queue.put_nowait, held)

    async def sender(self, send) -> None:
        try:
            while True:
                messages = await self.send_queue.get()
                if messages is None:
                    break
                try:
                    for message in messages:
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
            # Lets a handler that waits notice its client leaving (handlers/runtime/disconnect.py).
            watch = scope.setdefault("state", {})[STATE_KEY] = DisconnectWatch(receive, responder.loop)
            try:
                return await responder(scope, watch.receive, send)
            finally:
                watch.close()
        return await super().__call__(scope, receive, send)

    async def run_in_pool(self, scope, receive, function):
        """`function()` in the bridge's thread pool (the one WSGI_THREADS sizes), with the
        caller's context variables and the same watch on the client as a Flask request."""
        loop = asyncio.get_running_loop()
        watch = scope.setdefault("state", {})[STATE_KEY] = DisconnectWatch(receive, loop)
        try:
            return await loop.run_in_executor(self.executor, functools.partial(contextvars.copy_context().run,
                                                                               function))
        finally:
            watch.close()
