"""The outermost ASGI layer: request ids, the WePeople version header, security headers,
screening of the request line and headers, and reading the body (cap, deadlines,
Content-Encoding).

It runs before connexion's exception handling, so the errors it answers itself are
rendered here with the same `ErrorRenderer`; so are failures of the middlewares inside
it (CORS), which connexion's handlers do not see. The HTTP protocol
(`handlers/runtime/http_protocol.py`) hands the heads it refuses (too large, too slow,
unparseable) to this layer as requests marked `EDGE_REFUSAL`, so that they too are
answered in the API's shape with a request id.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handlers.runtime.body import (
    BodyCorrupt,
    BodyDeadlines,
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    codings_of,
    read_body,
)
from handlers.runtime.errors import ApiError, ErrorRenderer, RequestValidationFailed
from handlers.runtime.routing import ARRIVED, OPERATION, PRINCIPAL
from handlers.runtime.specs import Contracts
from models import logs, metrics
from models.config import Settings

log = logging.getLogger("edge")

# scope["state"] keys set by the HTTP protocol: (status, message) of a refused head, and
# the message of a body whose framing broke (bad chunk) after its request had started.
EDGE_REFUSAL = "edge.refusal"
EDGE_FRAMING_ERROR = "edge.framing_error"

# AlpineChat's codes for the statuses the edge answers (WePeople has one code for them).
ALPINECHAT_EDGE_CODES = {404: "not_found", 408: "request_timeout", 413: "payload_too_large",
                         414: "uri_too_long", 415: "unsupported_media_type", 431: "headers_too_large"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Response headers the edge sets (replacing any the app set).
_STAMPED = frozenset({b"x-request-id", b"x-content-type-options", b"x-api-version"})
_NO_STORE_STAMPED = _STAMPED | {b"cache-control"}


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


def base_url_of(scope: Scope) -> str:
    headers = Headers(scope=scope)
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    if _CONTROL.search(host) or "/" in host:
        host = "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    return f"{scope.get('scheme', 'http')}://{host}"


def media_type_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _count(api, operation, status: int, arrived: float) -> None:
    """One answered request in the metrics: its API, operation and status, and the time to
    its response's head (a stream's first byte)."""
    api_name = api.name if api is not None else "none"
    operation_id = operation.operation_id if operation is not None else "none"
    metrics.REQUESTS.labels(api_name, operation_id, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(api_name, operation_id).observe(time.perf_counter() - arrived)


access_log = logging.getLogger("access")
# The principal's ids an access line carries (never the key itself).
_LOGGED_IDS = ("organization_id", "app_id", "tenant_id", "key_id")


def _log_access(scope: Scope, api, answered: dict, arrived: float) -> None:
    """One line per request: method, path (no query string: it may hold a key), status,
    duration, bytes, API, operation and the principal's ids; never a header or a body."""
    operation = answered["operation"]
    principal = scope["state"].get(PRINCIPAL) or {}
    content_length = next((value for name, value in scope["headers"] if name == b"content-length"), b"0")
    duration_ms = round((time.perf_counter() - arrived) * 1000, 1)
    fields = {
        "method": scope["method"], "path": scope["path"], "status": answered["status"],
        "duration_ms": duration_ms, "bytes_in": int(content_length) if content_length.isdigit() else 0,
        "bytes_out": answered["bytes_out"], "api": api.name if api is not None else None,
        "operation": operation.operation_id if operation is not None else None,
        **{name: str(principal[name]) for name in _LOGGED_IDS if principal.get(name)},
    }
    access_log.info("%s %s %s %.1fms", scope["method"], scope["path"], answered["status"], duration_ms,
                    extra=fields)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, contracts: Contracts, renderer: ErrorRenderer,
                 settings: Settings | None = None):
        settings = settings or Settings()
        self.app = app
        self.contracts = contracts
        self.renderer = renderer
        self.api_version = contracts.wepeople.source["info"].get("x-api-version", contracts.wepeople.version)
        self.deadlines = BodyDeadlines(total=settings.body_timeout, idle=settings.body_idle_timeout)
        # What every response gets besides its request id (these names are set, not added).
        self.stamp = [(b"x-content-type-options", b"nosniff")]
        self.wepeople_stamp = [*self.stamp, (b"x-api-version", self.api_version.encode("latin-1"))]

    def _error(self, api, status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
        if status == 400:
            # Malformed requests get each API's malformed-input answer (400 invalid_body / 422).
            return RequestValidationFailed({"request": [message]})
        if api is self.contracts.wepeople:
            code = "batch_too_large" if status == 413 else "invalid_body"
        else:
            code = ALPINECHAT_EDGE_CODES[status]
        return _api_error(status, code, message, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        path = scope["path"]
        api = self.contracts.for_path(path)
        body_pending = _has_body(scope)
        # connexion's router decides which operation runs (handlers/runtime/routing.py).
        # The edge looks one up itself only for a body, whose cap and coding it must know
        # before reading it, ahead of the router.
        operation = (api.match(scope["method"], path) if body_pending and not _CONTROL.search(path)
                     else None)
        stamp = self.wepeople_stamp if api is self.contracts.wepeople else self.stamp
        started = False
        arrived = state[ARRIVED] = time.perf_counter()
        answered = {"status": 0, "bytes_out": 0, "operation": operation}
        log_binding = logs.bind(request_id=request_id)

        async def send_stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                routed = answered["operation"] = state.get(OPERATION) or operation
                answered["status"] = message["status"]
                _count(api, routed, message["status"], arrived)
                no_store = routed is not None and routed.source.get("x-personal-data")
                replaced = _NO_STORE_STAMPED if no_store else _STAMPED
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in replaced]
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(stamp)
                if no_store:
                    # Spec-declared: these answers hold personal data (leads, conversations).
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                answered["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            refusal = self._screen(scope, api, operation)
            if refusal is not None:
                raise refusal
            if body_pending:
                scope, receive = await self._read_body(scope, receive, api, operation)
                body_pending = False
            await self.app(scope, receive, send_stamped)
        except ClientGone:
            return
        except Exception as exc:
            if started:
                raise
            # An unread body leaves the connection unusable; so does a broken framing.
            close = body_pending or EDGE_REFUSAL in state or EDGE_FRAMING_ERROR in state
            await send_api_error(send_stamped, scope, self.renderer, api, exc,
                                 {"Connection": "close"} if close else None)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, api, answered, arrived)
            logs.reset(log_binding)

    def _screen(self, scope: Scope, api, operation) -> ApiError | None:
        """What the request line and headers alone refuse."""
        state = scope["state"]
        if EDGE_REFUSAL in state:
            status, message = state[EDGE_REFUSAL]
            return self._error(api, status, message)
        path = scope["path"]
        if ("//" in path and api.owns(path)) or _CONTROL.search(path):
            # No operation's path has an empty segment or a control character in it (a slug
            # or id never holds one). (The docs pages redirect `//` to their own URLs.)
            return self._error(api, 404, f"No operation at {scope['method']} {path}.")
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if len(hosts) > 1:
            return self._error(api, 400, "The request has more than one Host header.")
        if not _has_body(scope):
            return None
        headers = Headers(scope=scope)
        cap = self._cap(api, operation)
        declared = headers.get("content-length")
        if cap and declared is not None and declared.isdigit() and int(declared) > cap:
            # Refused from the header alone: nothing of the body is read.
            return self._too_large(api, cap)
        if operation is None or operation.request_schema is None:
            return None
        media = media_type_of(headers.get("content-type"))
        accepted = list(operation.source.get("requestBody", {}).get("content", {}))
        if media not in accepted or len(headers.getlist("content-type")) > 1:
            return self._error(api, 415, f"Content-Type must be {' or '.join(accepted)}.")
        codings = codings_of(headers.get("content-encoding"))
        supported = operation.ext("x-content-encodings") or []
        if len(codings) > 1 or any(coding not in supported for coding in codings):
            listed = ", ".join([*supported, "identity"])
            return self._error(api, 415, f"Content-Encoding must be one of: {listed}.",
                               headers={"Accept-Encoding": listed})
        return None

    def _cap(self, api, operation) -> int | None:
        return operation.max_body_bytes if operation else api.source.get("x-max-body-bytes")

    def _too_large(self, api, cap: int) -> ApiError:
        suffix = " (decompressed)" if api.source.get("x-content-encodings") else ""
        return self._error(api, 413, f"The request body exceeds {cap} bytes{suffix}.")

    async def _read_body(self, scope: Scope, receive: Receive, api, operation) -> tuple[Scope, Receive]:
        """Reads the whole body within the cap and the deadlines, inflating a declared
        coding, and hands it on with a Content-Length (connexion treats a body without
        one as missing)."""
        headers = Headers(scope=scope)
        codings = codings_of(headers.get("content-encoding")) if operation and operation.request_schema else []
        cap = self._cap(api, operation)
        try:
            body = await read_body(receive, cap=cap, coding=codings[0] if codings else None,
                                   deadlines=self.deadlines)
        except BodyTooLarge:
            raise self._too_large(api, cap) from None
        except BodyTimeout:
            raise self._error(api, 408, "The request body did not arrive in time.") from None
        except BodyCorrupt as exc:
            if EDGE_FRAMING_ERROR not in scope["state"]:  # else the framing is what broke it
                raise RequestValidationFailed({"body": [f"The {codings[0]} stream is corrupt: {exc}."]}) from None
            body = b""
        framing = scope["state"].get(EDGE_FRAMING_ERROR)
        if framing:
            raise self._error(api, 400, framing)
        drop = {b"transfer-encoding", b"content-length"} | ({b"content-encoding"} if codings else set())
        replace = [(b"content-length", str(len(body)).encode())]
        content_type = headers.get("content-type")
        if content_type is not None:
            # The media type in lower case, as connexion compares it (APPLICATION/JSON was a 500).
            media, _, parameters = content_type.partition(";")
            drop.add(b"content-type")
            replace.append((b"content-type", (media.strip().lower() + (";" + parameters if parameters else ""))
                            .encode("latin-1")))
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in drop] + replace
        return scope, _replay(body, receive)


def _api_error(status: int, code: str, message: str, headers: dict[str, str] | None) -> ApiError:
    """The one place the edge builds an ApiError (its constructor's signature is the
    error mapping's business)."""
    return ApiError(code, message, headers=headers, status=status)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


async def send_api_error(send: Send, scope: Scope, renderer: ErrorRenderer, api, error: Exception,
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
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
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
