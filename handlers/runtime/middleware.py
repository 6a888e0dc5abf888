"""The outermost ASGI layer: request ids, the WePeople version header, and body caps.

It runs before connexion's exception handling, so the errors it answers itself
(oversized bodies) are rendered here with the same `ErrorRenderer`.
"""
from __future__ import annotations

import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.errors import ApiError, ErrorRenderer
from handlers.runtime.specs import Contracts


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


def base_url_of(scope: Scope) -> str:
    headers = Headers(scope=scope)
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    return f"{scope.get('scheme', 'http')}://{host}"


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, contracts: Contracts, renderer: ErrorRenderer):
        self.app = app
        self.contracts = contracts
        self.renderer = renderer
        self.api_version = contracts.wepeople.source["info"].get("x-api-version", contracts.wepeople.version)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        api = self.contracts.for_path(scope["path"])
        stamp = [("X-Request-Id", request_id)]
        if api is self.contracts.wepeople:
            stamp.append(("X-API-Version", self.api_version))

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in stamp:
                    headers[name] = value
            await send(message)

        operation = api.match(scope["method"], scope["path"])
        cap = operation.max_body_bytes if operation else api.source.get("x-max-body-bytes")
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if cap and declared is not None and declared.isdigit() and int(declared) > cap:
            # Refused from the header alone: nothing of the body is read.
            await self._refuse_too_large(api, scope, send_stamped, cap)
            return
        if declared is None and "chunked" in headers.get("transfer-encoding", "").lower():
            # Count a chunked body up to the cap, then hand it on with a Content-Length
            # (connexion treats a body without one as missing).
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if cap and len(body) > cap:
                    await self._refuse_too_large(api, scope, send_stamped, cap)
                    return
                if not message.get("more_body", False):
                    break
            scope = dict(scope)
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if k.lower() not in (b"transfer-encoding", b"content-length")
            ] + [(b"content-length", str(len(body)).encode())]
            receive = _replay(bytes(body), receive)
        await self.app(scope, receive, send_stamped)

    async def _refuse_too_large(self, api, scope: Scope, send: Send, cap: int) -> None:
        error = ApiError("batch_too_large" if api is self.contracts.wepeople else "payload_too_large",
                         f"The request body exceeds {cap} bytes.")
        # The unread body makes the connection unusable.
        await send_api_error(send, scope, self.renderer, api, error, {"Connection": "close"})


async def send_api_error(send: Send, scope: Scope, renderer: ErrorRenderer, api, error: ApiError,
                         extra_headers: dict[str, str] | None = None) -> None:
    """Answers from an ASGI middleware with the API's one error mapping."""
    status, headers, body = renderer.render(
        api, error, request_id=request_id_of(scope), base_url=base_url_of(scope),
        method=scope["method"], path=scope["path"],
    )
    headers.update(extra_headers or {})
    headers["Content-Length"] = str(len(body))
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    })
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
