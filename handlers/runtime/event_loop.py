"""Operations answered on the event loop: no WSGI thread, no Flask request.

A pipeline whose handler is marked `@no_io` and takes no argument but its context, and
whose stages never wait (`Pipeline.on_event_loop`) runs here, right after connexion
routed, authenticated and validated the request (its key lookup is connexion's, in a
thread when not cached). WePeople's ping is one: its cost is that of a key check, not
of a hop to a thread, a Flask request and a WSGI response. Errors go on to the
exception layer outside, as from Flask; the answer's bytes are those Flask would write
(the same jsonifier).
"""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.runtime.routing import operation_of


class EventLoopOperations:
    def __init__(self, app: ASGIApp, *, runtime, jsonifier):
        self.app = app
        self.jsonifier = jsonifier
        self.pipelines = {id(pipeline.operation): pipeline for pipeline in runtime.pipelines.values()
                          if pipeline.on_event_loop}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipelines.get(id(operation_of(scope))) if scope["type"] == "http" else None
        if pipeline is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = self.render(pipeline.run(scope, {}))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def render(self, result) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A handler's return value as Flask would answer it: a JSON body, or a tuple of
        body, status and headers."""
        status, extra = 200, {}
        if isinstance(result, tuple):
            result, status, *rest = result
            extra = dict(rest[0]) if rest else {}
        body = self.jsonifier.dumps(result).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in extra.items()]
        return int(status), headers, body
