"""Errors escaping the middlewares outside connexion's exception handling.

connexion renders errors only from inside its exception middleware; what a middleware
placed before it raises (CORS looks the chatbot up in the database before routing)
reached the server's bare 500: no body, no content type, no request id. This layer sits
just inside the edge layer (which stamps the request id) and answers such an error with
the API's one error mapping: a database outage as 503 with Retry-After, anything else as
the API's 500.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.errors import ErrorRenderer
from handlers.runtime.middleware import send_api_error
from handlers.runtime.specs import Contracts


class ErrorBoundaryMiddleware:
    def __init__(self, app: ASGIApp, *, contracts: Contracts, renderer: ErrorRenderer):
        self.app = app
        self.contracts = contracts
        self.renderer = renderer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started:
                raise  # too late for another answer: the server closes the connection
            api = self.contracts.for_path(scope["path"])
            await send_api_error(send, scope, self.renderer, api, error)
