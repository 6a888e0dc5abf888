"""Server-sent events for the chat operation, served on the event loop.

connexion's FlaskApp runs Flask in a2wsgi's thread pool, where an open stream would hold
a thread for its whole length (10 per process by default). So the chat handler only
prepares the turn (auth, limits, budget, retrieval, the user message: short database
work in its unit of work) and returns a marker response; `ChatStreamMiddleware`, an ASGI
layer inside connexion's exception handling, swallows that response and streams the
turn itself with the async provider client. An open stream then costs a coroutine and
a socket, not a thread.

The stream: `Content-Type: text/event-stream`, `Cache-Control: no-cache`,
`X-Accel-Buffering: no` (nginx must not buffer), one `data: {json}` per event, and a
`: keep-alive` comment whenever the turn is quiet for `CHAT_KEEPALIVE_SECONDS`.
A client that goes away cancels the turn; what was answered so far is still stored.
A worker told to stop ends its streams shortly before it is killed
(handlers/runtime/shutdown.py), and each worker sweeps the reservations of turns whose
worker died (models/chat/reservations.py) at start and every `CHAT_SWEEP_SECONDS`.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

import anyio
import orjson
from flask import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.routing import ARRIVED, operation_of
from handlers.runtime.shutdown import DRAIN
from models import metrics
from models.chat import reservations
from models.chat.config import ChatConfig
from models.chat.turn import ChatEngine, ClientGone, Localizer, Turn

log = logging.getLogger("sse")

MARKER_HEADER = "X-Chat-Turn"
_MARKER = MARKER_HEADER.lower().encode()
STATE_KEY = "chat_turn"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keep-alive\n\n"


def build_chat_engine(runtime, config: ChatConfig | None = None) -> ChatEngine:
    """The process's chat engine, from the runtime's settings, the `CHAT_*` environment
    (or `config`) and the spec's localized messages. Built by the composition root
    (handlers/runtime/app.py create_app) and held by the runtime."""
    return ChatEngine(runtime.database, runtime.settings, config or ChatConfig.from_env(),
                      Localizer(localized_messages(runtime)))


def engine_for(runtime) -> ChatEngine:
    return runtime.chat_engine


def configure_chat(app, config: ChatConfig) -> ChatEngine:
    """Replaces the chat engine's configuration (tests, embedding)."""
    runtime = app.app.extensions["runtime"]
    runtime.chat_engine = build_chat_engine(runtime, config)
    return runtime.chat_engine


def localized_messages(runtime) -> dict[str, dict[str, str]]:
    schema = runtime.contracts.alpinechat.schema("ChatErrorEvent")
    return schema["properties"]["message"].get("x-localized", {})


def event_stream(scope, turn: Turn) -> Response:
    """Hands the turn to `ChatStreamMiddleware` (same request scope) and returns the
    marker response it replaces."""
    scope.setdefault("state", {})[STATE_KEY] = turn
    return Response(b"", status=200, headers={MARKER_HEADER: "1"})


def encode(event: dict | None, event_id: bytes | None = None) -> bytes:
    if event is None:
        return KEEPALIVE
    # orjson: compact, UTF-8 as json.dumps(ensure_ascii=False) gave, ~0.5 instead of ~12 µs
    # per text event (40 a turn).
    data = b"data: " + orjson.dumps(event) + b"\n\n"
    return b"id: " + event_id + b"\n" + data if event_id else data


def stream_headers(turn: Turn) -> list[tuple[bytes, bytes]]:
    """SSE_HEADERS plus the conversation's and the answer's ids (the widget's feedback and
    escalations name them); the spec documents both beside the chat operation."""
    headers = list(SSE_HEADERS)
    if turn.plan.conversation_id is not None:
        headers.append((b"x-conversation-id", str(turn.plan.conversation_id).encode()))
    if turn.plan.reply_id is not None:
        headers.append((b"x-message-id", str(turn.plan.reply_id).encode()))
    return headers


def streams(operation) -> bool:
    """The operation answers `text/event-stream` (the chat turn)."""
    return any("text/event-stream" in (response.get("content") or {})
               for response in operation.source.get("responses", {}).values() if isinstance(response, dict))


class ChatStreamMiddleware:
    """After connexion's router: intercepts the operations that answer a stream."""

    def __init__(self, app: ASGIApp, runtime):
        self.app = app
        self.runtime = runtime
        self.streaming = {id(operation) for api in runtime.contracts for operation in api.operations.values()
                          if streams(operation)}
        self._sweeper: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_upstream_on_shutdown(receive), send)
            return
        if scope["type"] != "http" or id(operation_of(scope)) not in self.streaming:
            await self.app(scope, receive, send)
            return
        intercepted = False

        async def swallow_marker(message: Message) -> None:
            nonlocal intercepted
            if message["type"] == "http.response.start" and any(k == _MARKER for k, _ in message["headers"]):
                intercepted = True
            if not intercepted:
                await send(message)

        await self.app(scope, receive, swallow_marker)
        if intercepted:
            # The handler's unit of work has committed by now: the turn is durable.
            turn: Turn = scope["state"].pop(STATE_KEY)
            await stream_turn(turn, receive, send, scope["state"].get(ARRIVED))

    def _closing_upstream_on_shutdown(self, receive: Receive) -> Receive:
        # The SDK clients' connection pools belong to this loop: closed before it ends.
        async def receive_closing() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                config = engine_for(self.runtime).config
                DRAIN.install(graceful_timeout=config.graceful_timeout_seconds, margin=config.shutdown_margin_seconds)
                if config.sweep_interval_seconds > 0:
                    self._sweeper = asyncio.get_running_loop().create_task(self._sweep_reservations())
            if message["type"] == "lifespan.shutdown":
                if self._sweeper is not None:
                    self._sweeper.cancel()
                engine = self.runtime.chat_engine
                if engine is not None:
                    try:
                        await engine.providers.aclose()
                    except Exception:
                        log.exception("could not close the upstream clients")
            return message

        return receive_closing

    async def _sweep_reservations(self) -> None:
        """Settles reservations of turns whose worker died, soon after start and then
        every `sweep_interval_seconds` (spread, so workers started together do not sweep
        together). Every worker of every host does it: the sweep is idempotent."""
        await asyncio.sleep(random.uniform(0.0, min(10.0, engine_for(self.runtime).config.sweep_interval_seconds)))
        while True:
            engine = engine_for(self.runtime)
            try:
                await anyio.to_thread.run_sync(reservations.sweep, engine.database, engine.config)
            except Exception as exc:  # the database may be away; the next sweep retries
                log.warning("chat reservation sweep failed: %s", exc)
            await asyncio.sleep(engine.config.sweep_interval_seconds * random.uniform(0.8, 1.2))


# Events a turn emits back to back up to `done`, with nothing awaited between them: held
# and written with `done` and the end of the body in one socket write (4 writes were 1).
_TAIL = frozenset({"card", "usage", "finish"})


async def stream_turn(turn: Turn, receive: Receive, send: Send, arrived: float | None = None) -> None:
    """Runs the turn in one task that writes each event as it comes; a second task
    watches for the visitor leaving (which cancels the first), and a timer sends a
    keep-alive comment whenever nothing was written for `keepalive_seconds`."""
    loop = asyncio.get_running_loop()
    keepalive_seconds = turn.engine.config.keepalive_seconds
    held: list[bytes] = []
    last_write = loop.time()
    sending = False  # an event is being written (keep-alives wait for the next quiet spell)
    keepalive_task: asyncio.Task | None = None
    ended = False
    # Each event's SSE id: "<message id>:<n>", or "<n>" when the turn stored no message.
    id_prefix = f"{turn.plan.reply_id}:".encode() if turn.plan.reply_id is not None else b""
    sequence = 0
    sequence_written = 0  # events written to the socket (the first is the answer's first byte)

    async def emit(event: dict) -> None:
        nonlocal last_write, sending, ended, sequence, sequence_written
        kind = event["type"]
        sequence += 1
        body = encode(event, id_prefix + str(sequence).encode())
        if kind in _TAIL:
            held.append(body)
            return
        if held:
            body = b"".join(held) + body
            held.clear()
        if sequence_written == 0 and arrived is not None:
            metrics.CHAT_FIRST_BYTE_SECONDS.observe(time.perf_counter() - arrived)
        sequence_written += 1
        sending = True
        try:
            if keepalive_task is not None and not keepalive_task.done():
                await keepalive_task  # one writer at a time
            last_write = loop.time()
            if kind == "done":
                ended = True
                await send({"type": "http.response.body", "body": body, "more_body": False})
            else:
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError as exc:  # the socket broke under us
            raise ClientGone() from exc
        finally:
            sending = False

    async def send_keepalive() -> None:
        try:
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
        except OSError:
            run_task.cancel()

    def tick() -> None:
        nonlocal keepalive_handle, keepalive_task, last_write
        now = loop.time()
        due = last_write + keepalive_seconds
        if now >= due and not sending and not ended:
            keepalive_task = loop.create_task(send_keepalive())
            last_write = now
            due = now + keepalive_seconds
        keepalive_handle = loop.call_at(max(due, now + 0.001), tick)

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    def end_for_shutdown() -> None:
        # The turn ends itself with its events; a visitor who does not read them by half
        # the margin is given up on, so the turn is still stored before the kill.
        turn.interrupt()
        loop.call_later(turn.engine.config.shutdown_margin_seconds / 2, run_task.cancel)

    gone = False
    keepalive_handle = None
    unwatch = None
    metrics.CHAT_STREAMS_OPEN.inc()
    try:
        await send({"type": "http.response.start", "status": 200, "headers": stream_headers(turn)})
        run_task = loop.create_task(turn.run(emit))
        unwatch = DRAIN.watch(end_for_shutdown)
        watch_task = loop.create_task(watch())
        keepalive_handle = loop.call_at(last_write + keepalive_seconds, tick)
        try:
            await asyncio.wait({run_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keepalive_handle.cancel()
            for task in (run_task, watch_task, keepalive_task):
                if task is not None and not task.done():
                    task.cancel()
            results = await asyncio.gather(run_task, watch_task, return_exceptions=True)
            if keepalive_task is not None:
                await asyncio.gather(keepalive_task, return_exceptions=True)
        if watch_task.done() and not watch_task.cancelled() and not ended:
            gone = True  # the visitor left before `done`
        elif isinstance(results[0], (ClientGone, asyncio.CancelledError)):
            gone = True
        elif isinstance(results[0], BaseException):
            log.error("chat stream failed", exc_info=results[0])
        if gone:
            turn.disconnected()
        elif not ended:
            await send({"type": "http.response.body", "body": b"".join(held), "more_body": False})
    except OSError:
        turn.disconnected()
    finally:
        metrics.CHAT_STREAMS_OPEN.dec()
        if unwatch is not None:
            unwatch()
        # Stored even when the client left or the loop is shutting this task down.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(turn.finalize)
            except Exception:
                log.exception("could not store the chat turn")
