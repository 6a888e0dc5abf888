"""Routed once: connexion's router decides which operation a request is for, and every
later stage reads that decision from the scope (`operation_of`).

connexion's RoutingMiddleware records the operation it routed to in the scope (the
name our resolver gave it, handlers/runtime/adapters.py); `Routes` maps that name to the
spec's `Operation`, a dict lookup. Middlewares that need the operation (CORS, the chat
stream, the health probe, validation) sit after routing or read it when the response
starts. Only the edge layer, outermost, looks at the operation before connexion routes
it, and only when a request has a body whose cap and coding it must know before reading
it.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.runtime.adapters import routed_operation_id
from handlers.runtime.specs import Contracts, Operation

# scope["state"] keys
OPERATION = "operation"
# When the edge saw the request (time.perf_counter()): chat time-to-first-byte is measured from it.
ARRIVED = "arrived"
# The verified principal (handlers/runtime/pipeline.py), for the access log's ids.
PRINCIPAL = "principal"
# A CORS preflight routed as the method it asks about (handlers/runtime/cors.py): the
# request's own method, and where the routed operation is left for the CORS layer.
PREFLIGHT = "cors.preflight"
PREFLIGHT_OPERATION = "cors.preflight_operation"
# The routed operation's path parameters (connexion keeps them in its own scope copy).
PATH_PARAMS = "path_params"


class Routes:
    """Operation by the name connexion routes to; filled by the resolver at start-up."""

    def __init__(self, contracts: Contracts):
        self.contracts = contracts
        self.by_name: dict[str, Operation] = {}
        # 405's Allow: the methods of each path template.
        self.methods_by_path: dict[str, set[str]] = {}
        for api in contracts:
            for operation in api.operations.values():
                self.methods_by_path.setdefault(operation.path, set()).add(operation.method)

    def add(self, name: str, operation: Operation) -> None:
        self.by_name[name] = operation

    def allowed_methods(self, path: str) -> list[str]:
        """The methods of the path template `path` matches (an error path only: 405)."""
        for api in self.contracts:
            for operation in api.operations.values():
                if operation.path_regex.match(path):
                    return sorted(self.methods_by_path[operation.path])
        return []


def operation_of(scope: Scope) -> Operation | None:
    """The operation connexion routed this request to (after routing), else None."""
    return scope.get("state", {}).get(OPERATION)


class RoutedOperationMiddleware:
    """Right after connexion's router: puts the routed `Operation` in scope["state"], and
    ends a CORS preflight there (its answer is the CORS layer's, outside)."""

    def __init__(self, app: ASGIApp, *, routes: Routes):
        self.app = app
        self.by_name = routes.by_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            operation = state[OPERATION] = self.by_name.get(routed_operation_id(scope))
            state[PATH_PARAMS] = scope.get("path_params") or {}
            if PREFLIGHT in state:
                # Routed as the method it asks about: the CORS layer answers it.
                state[PREFLIGHT_OPERATION] = operation
                return
        await self.app(scope, receive, send)
