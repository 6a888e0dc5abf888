"""Operations answered without Flask: from the ASGI side, right after connexion routed,
authenticated and validated the request.

A pipeline that needs no Flask request (`Pipeline.without_flask`: its handler takes at
most the body besides its context, and no stage reads Flask's request) runs here:

- on the event loop when nothing in it waits (`Pipeline.on_event_loop`: a `@no_io`
  handler taking only its context; the two APIs' pings): the cost of a key check, no thread;
- otherwise in the WSGI bridge's thread pool (the ingest operations), with the body the
  validator parsed (a batch's is parsed there, in the pool: validation.DeferredBody): no
  WSGI environ, no Flask request context, no connexion decorators.

Errors go on to the exception layer outside, as from Flask. The answer is what the Flask
path writes: the same response object, or a result written by the same jsonifier.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.runtime.jsonifier import as_response
from handlers.runtime.routing import operation_of
from handlers.runtime.validation import PARSED_BODY, taken_body


class DirectOperations:
    def __init__(self, app: ASGIApp, *, runtime, bridge):
        self.app = app
        self.bridge = bridge  # adapters.QueuedWSGIMiddleware: its thread pool
        # Decided once, at start-up: the pipeline, whether it runs on the loop, whether it takes the body.
        self.pipelines = {id(pipeline.operation): (pipeline, pipeline.on_event_loop,
                                                   "body" in pipeline.__signature__.parameters)
                          for pipeline in runtime.pipelines.values() if pipeline.without_flask}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self.pipelines.get(id(operation_of(scope))) if scope["type"] == "http" else None
        if direct is None:
            await self.app(scope, receive, send)
            return
        pipeline, on_event_loop, takes_body = direct
        if on_event_loop:
            result = pipeline.run(scope, {})
        else:
            if takes_body and PARSED_BODY not in scope.get("state", {}):
                await self.app(scope, receive, send)  # a charset the validator leaves to Flask
                return

            def run():
                kwargs = {"body": taken_body(scope)} if takes_body else {}
                try:
                    return pipeline.run(scope, kwargs)
                finally:
                    kwargs.clear()  # the body's objects are freed here, in the pool

            result = await self.bridge.run_in_pool(scope, receive, run)
        status, headers, body = render(result)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def render(result) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A handler's result as status, ASGI headers and body. (The server writes Date.)"""
    response = as_response(result)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in response.headers.items() if name.lower() != "date"]
    return response.status_code, headers, response.get_data()
