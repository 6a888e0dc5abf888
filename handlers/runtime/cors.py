"""CORS for the widget's endpoints, per chatbot.

Operations marked `x-cors: chatbot-allowed-origins` in the AlpineChat contract answer
cross-origin requests only from the origins configured on the chatbot of the `{slug}`
in the path (`Chatbot.allowed_origins`).

This layer sits outside connexion's exception handling, so that errors (a 422, a 429)
reach the widget with their CORS headers too; it matches no paths itself. It decorates a
response when it starts, by the operation connexion routed the request to
(handlers/runtime/routing.py). A preflight (`OPTIONS` with an `Origin` and
`Access-Control-Request-Method`) is routed as the method it asks about, since no
operation declares OPTIONS; the layer after the router hands back the operation it
found instead of running it, and the preflight is answered here.
"""
from __future__ import annotations

import anyio
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.errors import ApiError, ErrorRenderer
from handlers.runtime.middleware import send_api_error
from handlers.runtime.routing import (
    OPERATION,
    PATH_PARAMS,
    PREFLIGHT,
    PREFLIGHT_OPERATION,
    Routes,
)
from handlers.runtime.specs import Contracts
from models import alpinechat
from models.db import Database

CORS_EXTENSION = "x-cors"
CHATBOT_ORIGINS = "chatbot-allowed-origins"
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "Last-Event-ID")
# The chat stream's ids: the widget names them in feedback and escalations.
EXPOSED_HEADERS = ("Retry-After", "X-Request-Id", "ETag", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                   "X-Conversation-Id", "X-Message-Id")
PREFLIGHT_MAX_AGE = 600


def cors_enabled(operation) -> bool:
    return operation.source.get(CORS_EXTENSION) == CHATBOT_ORIGINS and "{slug}" in operation.path


class ChatbotCorsMiddleware:
    def __init__(self, app: ASGIApp, *, contracts: Contracts, database: Database, renderer: ErrorRenderer,
                 routes: Routes):
        self.app = app
        self.database = database
        self.renderer = renderer
        self.contracts = contracts
        self.routes = routes
        self.api = contracts.alpinechat
        # The CORS methods of each CORS-enabled operation's path.
        methods: dict[str, set[str]] = {}
        for operation in contracts.alpinechat.operations.values():
            if cors_enabled(operation):
                methods.setdefault(operation.path, set()).add(operation.method)
        self.methods = {id(operation): methods[operation.path]
                        for operation in contracts.alpinechat.operations.values() if cors_enabled(operation)}
        self.cors_methods = sorted({method for found in methods.values() for method in found})

    def _allowed_origins(self, slug: str) -> list[str] | None:
        """The chatbot's origins; None when there is no active chatbot of that slug."""
        with self.database.unit_of_work() as session:
            chatbot = alpinechat.get_active_chatbot(session, slug)
            return list(chatbot.allowed_origins or ()) if chatbot else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = requested = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                requested = value.decode("latin-1").strip().upper()
        state = scope.setdefault("state", {})
        if origin and requested and scope["method"] == "OPTIONS":
            await self._preflight(scope, receive, send, origin, requested)
            return
        methods = self.methods

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                operation = state.get(OPERATION)
                if operation is not None and id(operation) in methods:
                    response_headers = MutableHeaders(scope=message)
                    # Every answer depends on Origin (public caches must keep them apart).
                    response_headers.add_vary_header("Origin")
                    if origin:
                        slug = state[PATH_PARAMS]["slug"]
                        origins = await anyio.to_thread.run_sync(self._allowed_origins, slug)
                        if origins and _same_origin(origin, origins):
                            response_headers["Access-Control-Allow-Origin"] = origin
                            response_headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send, origin: str, requested: str) -> None:
        state = scope["state"]
        state[PREFLIGHT] = "OPTIONS"
        # Routed as the method it asks about; a method the path does not have is answered
        # as the preflight of the path's CORS methods (the browser then refuses the
        # request). A path no operation has goes on as any OPTIONS request would.
        answer: list[Message] = []
        for method in (requested, *(m for m in self.cors_methods if m != requested)):
            attempt = _Held()
            await self.app({**scope, "method": method}, receive, attempt)
            operation = state.pop(PREFLIGHT_OPERATION, None)
            if operation is not None:
                break
            answer = answer or attempt.messages  # the router's 405 for this method
        else:
            del state[PREFLIGHT]
            if not answer:
                await self.app(scope, receive, send)
                return
            for message in answer:
                await send(message)
            return
        del state[PREFLIGHT]
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if id(operation) not in self.methods:
            # OPTIONS is no operation of this path, and it answers no cross-origin requests.
            api = self.contracts.for_path(scope["path"])
            allow = ", ".join(self.routes.allowed_methods(scope["path"]))
            await send_api_error(send, scope, self.renderer, api, HTTPException(405),
                                 {"Allow": allow} if allow else None)
            return
        origins = await anyio.to_thread.run_sync(self._allowed_origins, state[PATH_PARAMS]["slug"])
        if origins is None:
            await send_api_error(send, scope, self.renderer, self.api, ApiError("not_found"), {"Vary": vary})
            return
        if not _same_origin(origin, origins):
            # No CORS headers: the browser refuses the cross-origin request.
            await send_api_error(send, scope, self.renderer, self.api, ApiError("forbidden"), {"Vary": vary})
            return
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(self.methods[id(operation)] | {"OPTIONS"})),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            "Vary": vary,
            "Content-Length": "0",
        }
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b""})


class _Held:
    """An ASGI send that keeps what it is given."""

    def __init__(self):
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


def _same_origin(origin: str, origins: list[str]) -> bool:
    try:
        normalized = alpinechat.normalize_origin(origin)
    except ValueError:  # "null" (sandboxed frames, file://) or garbage
        return False
    return normalized in origins
