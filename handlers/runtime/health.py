"""`GET /api/healthz` (readiness) and `GET /livez` (liveness) answered on the event loop.

A load balancer's probe must answer within a second throughout any outage. Through
Flask it needs one of the WSGI threads, which requests stuck on a failing dependency
can all hold; here it needs none: the report (models/health.py) is awaited with its
deadline. It sits after connexion's router and answers the operation the router found.
Requests with a query string go on to the operation's Flask handler, which
validates them as the contract says and gives the same report.
"""
from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.runtime.routing import operation_of
from models import health

PATH = "/api/healthz"
# Liveness, off the contracts: the process answers; no dependency is touched, so an
# outage (which readiness reports) never gets a healthy worker restarted.
LIVENESS_PATH = "/livez"
LIVE_BODY = b'{"status":"alive"}'


class HealthMiddleware:
    def __init__(self, app: ASGIApp, *, runtime):
        self.app = app
        self.runtime = runtime
        self.probe = next(operation for operation in runtime.contracts.alpinechat.operations.values()
                          if operation.method == "GET" and operation.path == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == LIVENESS_PATH and scope["method"] in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                    (b"content-length", str(len(LIVE_BODY)).encode())]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else LIVE_BODY})
            return
        if scope["type"] != "http" or operation_of(scope) is not self.probe or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        report = await health.PROBE.report_async(self.runtime.database, self.runtime.redis)
        body = orjson.dumps(report)
        await send({"type": "http.response.start", "status": 200 if report["status"] == "ok" else 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
