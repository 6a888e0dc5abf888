"""CORS for the widget's endpoints, per chatbot.

Operations marked `x-cors: chatbot-allowed-origins` in the AlpineChat contract answer
cross-origin requests only from the origins configured on the chatbot of the `{slug}`
in the path (`Chatbot.allowed_origins`). Preflights (`OPTIONS` with
`Access-Control-Request-Method`) are answered here, before connexion's routing, which
knows no OPTIONS operation and would say 405.
"""
from __future__ import annotations

import anyio
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.errors import ApiError, ErrorRenderer
from handlers.runtime.middleware import send_api_error
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


class _Route:
    """The CORS-enabled operations of one path: their regex and methods."""

    def __init__(self, operation):
        self.regex = operation.path_regex
        self.methods: set[str] = set()


class ChatbotCorsMiddleware:
    def __init__(self, app: ASGIApp, *, contracts: Contracts, database: Database, renderer: ErrorRenderer):
        self.app = app
        self.database = database
        self.renderer = renderer
        self.api = contracts.alpinechat
        routes: dict[str, _Route] = {}
        for operation in contracts.alpinechat.operations.values():
            if operation.source.get(CORS_EXTENSION) == CHATBOT_ORIGINS and "{slug}" in operation.path:
                routes.setdefault(operation.path, _Route(operation)).methods.add(operation.method)
        self.routes = list(routes.values())

    def _match(self, path: str) -> tuple[_Route, str] | None:
        for route in self.routes:
            found = route.regex.match(path)
            if found:
                return route, found.group("slug")
        return None

    def _allowed_origins(self, slug: str) -> list[str] | None:
        """The chatbot's origins; None when there is no active chatbot of that slug."""
        with self.database.unit_of_work() as session:
            chatbot = alpinechat.get_active_chatbot(session, slug)
            return list(chatbot.allowed_origins or ()) if chatbot else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope["path"]) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, slug = matched
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        allowed = None
        if origin:
            origins = await anyio.to_thread.run_sync(self._allowed_origins, slug)
            if preflight:
                await self._preflight(scope, send, route, origin, origins)
                return
            allowed = origin if origins and _same_origin(origin, origins) else None

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                # Every answer depends on Origin (public caches must keep them apart).
                response_headers.add_vary_header("Origin")
                if allowed:
                    response_headers["Access-Control-Allow-Origin"] = allowed
                    response_headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, route: _Route, origin: str,
                         origins: list[str] | None) -> None:
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if origins is None:
            await send_api_error(send, scope, self.renderer, self.api, ApiError("not_found"), {"Vary": vary})
            return
        if not _same_origin(origin, origins):
            # No CORS headers: the browser refuses the cross-origin request.
            await send_api_error(send, scope, self.renderer, self.api, ApiError("forbidden"), {"Vary": vary})
            return
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(route.methods | {"OPTIONS"})),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            "Vary": vary,
            "Content-Length": "0",
        }
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b""})


def _same_origin(origin: str, origins: list[str]) -> bool:
    try:
        normalized = alpinechat.normalize_origin(origin)
    except ValueError:  # "null" (sandboxed frames, file://) or garbage
        return False
    return normalized in origins
