"""Each operation's pipeline, built once at start-up from its spec.

connexion routes the request, authenticates it (SecurityMiddleware) and validates it;
then it calls the operation's `Pipeline`, whose stages run in this order, each a small
named piece that the spec switches on:

- `Authenticate`: the principal connexion's security handler verified (`security`);
- `DocumentedErrors`: a refusal renamed to the one the operation documents
  (handlers/runtime/documented.py);
- `RateLimitHeaders`: WePeople's `X-RateLimit-*` on successes and on quota 429s;
- `Limit`: the spec's rate limit (WePeople `x-limits.rateLimits`, AlpineChat
  `x-rate-limit`) for operations that document a 429; `x-rate-limit.on-exceeded:
  stream-event` hands the refusal to the handler (the chat turn says so in its stream)
  instead of answering 429;
- `ConditionalCaching`: `x-cache-control`, a strong ETag and 304s;
- `Idempotent`: `x-idempotency` (handlers/runtime/idempotency.py);
- `UnitOfWork`: one session per request, opened on first use of `ctx.db`, committed when
  the handler returns and rolled back when it raises. Handlers never commit.

Handlers receive a typed `RequestContext` first, then the operation's parameters and
body by their spec names (connexion's own argument passing).

A pipeline that needs no Flask request (`Pipeline.without_flask`) is run straight from the
ASGI side by handlers/runtime/direct.py: on the event loop when nothing in it waits (a
`@no_io` handler: the pings), otherwise in the WSGI thread pool (the ingest operations).
The others (path or query parameters, conditional caching) run under Flask, through
connexion's argument passing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import typing as t

from connexion import context as connexion_context
from flask import Response, make_response
from flask import request as flask_request

from handlers.runtime.adapters import verified_principal
from handlers.runtime.documented import foreign_key_translation
from handlers.runtime.errors import ApiError
from handlers.runtime.idempotency import Idempotency
from handlers.runtime.jsonifier import as_response
from handlers.runtime.middleware import request_id_of
from handlers.runtime.routing import PRINCIPAL
from handlers.runtime.specs import ApiSpec, Operation
from models import logs
from models.errors import DomainError

if t.TYPE_CHECKING:  # pragma: no cover
    from handlers.runtime.app import Runtime

# `x-rate-limit.on-exceeded`: what a refused request gets.
REJECT = "reject"  # a 429 in the API's error shape (the default)
STREAM_EVENT = "stream-event"  # the handler gets the decision; its stream tells the client


@dataclasses.dataclass(eq=False)
class RequestContext:
    """What a handler may know about its request, besides its parameters and body."""

    runtime: Runtime
    operation: Operation
    scope: dict
    principal: dict | None = None
    client_ip: str = ""
    rate_limit: t.Any = None  # the limit decision (models' RateDecision), when the operation is limited
    before_commit: t.Callable | None = None  # set by Idempotent: stores the response in the same transaction
    _work: contextlib.ExitStack | None = None
    _session: t.Any = None
    _after_commit: list = dataclasses.field(default_factory=list)

    def after_commit(self, callback: t.Callable[[], t.Any]) -> None:
        """Run `callback` once the request's unit of work has committed (not if it rolls back)."""
        self._after_commit.append(callback)

    @property
    def request_id(self) -> str:
        return request_id_of(self.scope)

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        """The path as Flask's request gives it (below the server's root path)."""
        path, root = self.scope["path"], self.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        return "/" + path.lstrip("/")

    def header(self, name: str) -> str | None:
        """A request header; repeated ones joined by commas, as in a WSGI environ."""
        wanted = name.lower().encode("latin-1")
        values = [value.decode("latin-1") for key, value in self.scope["headers"] if key == wanted]
        return ",".join(values) if values else None

    @property
    def settings(self):
        return self.runtime.settings

    @property
    def contract(self) -> ApiSpec:
        return self.operation.api

    @property
    def redis(self):
        return self.runtime.redis

    @property
    def database(self):
        return self.runtime.database

    @property
    def chat_engine(self):
        return self.runtime.chat_engine

    @property
    def db(self):
        """The request's session (its unit of work), opened on first use."""
        if self._session is None:
            if self._work is None:
                raise RuntimeError(f"{self.operation.operation_id} has no unit of work")
            self._session = self._work.enter_context(self.runtime.database.unit_of_work())
        return self._session


class Stage:
    """One step of a pipeline; `next` is the rest of it."""

    next: t.Callable[[RequestContext, dict], t.Any]

    def __call__(self, ctx: RequestContext, kwargs: dict) -> t.Any:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class Authenticate(Stage):
    """The principal of the bearer key connexion's security handler verified."""

    def __call__(self, ctx, kwargs):
        ctx.principal = verified_principal(ctx.scope)
        ctx.scope.setdefault("state", {})[PRINCIPAL] = ctx.principal
        return self.next(ctx, kwargs)


class DocumentedErrors(Stage):
    def __init__(self, translate):
        self.translate = translate

    def __call__(self, ctx, kwargs):
        try:
            return self.next(ctx, kwargs)
        except DomainError as error:
            raise self.translate(error)  # noqa: B904 - the caught error, renamed in place: its chain stays


class RateLimitHeaders(Stage):
    """WePeople's `X-RateLimit-*` on every success, and on quota 429s from the domain."""

    def __init__(self, runtime: Runtime, api: ApiSpec):
        self.renderer = runtime.renderer
        self.api = api

    def __call__(self, ctx, kwargs):
        try:
            result = self.next(ctx, kwargs)
        except DomainError as error:
            if ctx.rate_limit is not None and self.renderer.status_for(self.api, error.code) == 429:
                error.headers = {**ctx.rate_limit.headers(), **error.headers}
            raise
        if ctx.rate_limit is None:
            return result
        response = as_response(result)
        if response.status_code < 300:
            response.headers.update(ctx.rate_limit.headers())
        return response


class Limit(Stage):
    def __init__(self, runtime: Runtime, operation: Operation, policy, on_exceeded: str):
        self.runtime = runtime
        self.operation = operation
        self.policy = policy
        self.on_exceeded = on_exceeded

    def __call__(self, ctx, kwargs):
        if not ctx.client_ip:
            ctx.client_ip = self.runtime.client_ip(ctx.scope)
        decision = ctx.rate_limit = self.policy(ctx.principal, ctx.client_ip, kwargs)
        if not decision.allowed and self.on_exceeded == REJECT:
            raise self.runtime.rate_limited(self.operation, decision)
        return self.next(ctx, kwargs)

    def __repr__(self) -> str:
        return f"Limit({self.on_exceeded})"


class ConditionalCaching(Stage):
    """Spec-declared caching (`x-cache-control`): Cache-Control, a strong ETag over the
    body, and 304 when the client's If-None-Match matches (werkzeug's, on Flask's request)."""

    def __init__(self, cache_control: str):
        self.cache_control = cache_control

    def __call__(self, ctx, kwargs):
        return conditional(self.next(ctx, kwargs), self.cache_control)


def conditional(result, cache_control: str) -> Response:
    response = make_response(result)
    if response.status_code == 200:
        response.headers["Cache-Control"] = cache_control
        response.add_etag()
        response.make_conditional(flask_request)
    return response


class Idempotent(Stage):
    def __init__(self, idempotency: Idempotency):
        self.idempotency = idempotency

    def __call__(self, ctx, kwargs):
        def execute(before_commit=None):
            ctx.before_commit = before_commit
            return self.next(ctx, kwargs)

        return self.idempotency.run(ctx, ctx.principal, kwargs.get("body"), execute)


class UnitOfWork(Stage):
    """One transaction per run of the handler (idempotency may run it again after a lost
    claim): committed when it returns, rolled back when it raises; opened only if the
    handler (or idempotency's store) uses the session."""

    def __call__(self, ctx, kwargs):
        ctx._after_commit.clear()  # a run after a lost claim starts afresh
        with contextlib.ExitStack() as work:
            ctx._work, ctx._session = work, None
            try:
                result = self.next(ctx, kwargs)
                if ctx.before_commit is not None:
                    result = ctx.before_commit(ctx.db, result)
            finally:
                ctx._work = None
        for callback in ctx._after_commit:
            callback()
        return result


class CallHandler:
    def __init__(self, handler):
        self.handler = handler

    def __call__(self, ctx, kwargs):
        return self.handler(ctx, **kwargs)

    def __repr__(self) -> str:
        return f"{self.handler.__module__}.{self.handler.__name__}"


def no_io(handler):
    """Marks a handler that does no I/O and does not block: it reads its context (the
    principal, the settings) and returns a JSON value, or (value, status[, headers]).
    Its operation may then run on the event loop."""
    handler.no_io = True
    return handler


class Pipeline:
    """The callable connexion runs for one operation (in Flask's request context), or
    handlers/runtime/direct.py runs (`run`) when it needs no Flask request."""

    def __init__(self, runtime: Runtime, operation: Operation, stages: list[Stage], handler):
        self.runtime = runtime
        self.operation = operation
        self.stages = stages
        self.handler = handler
        chain: t.Callable = CallHandler(handler)
        for stage in reversed(stages):
            stage.next = chain
            chain = stage
        self._first = chain
        # connexion passes the arguments this signature names: the handler's, but `ctx`.
        signature = inspect.signature(handler)
        parameters = list(signature.parameters.values())[1:]
        self.__signature__ = signature.replace(parameters=parameters)
        self.__name__ = handler.__name__
        self.__qualname__ = handler.__qualname__
        self.__module__ = handler.__module__
        self.__doc__ = handler.__doc__

    def __call__(self, **kwargs):
        return self.run(connexion_context.scope, kwargs)

    def run(self, scope: dict, kwargs: dict):
        ctx = RequestContext(self.runtime, self.operation, scope)
        # Records logged while it runs carry the request's id and operation.
        binding = logs.bind(request_id=ctx.request_id, operation=self.operation.operation_id)
        try:
            return self._first(ctx, kwargs)
        finally:
            logs.reset(binding)

    @property
    def without_flask(self) -> bool:
        """Runs from the ASGI side: its handler takes at most the request body besides its
        context (connexion validated any parameters already; only the body is passed),
        and no stage needs Flask's request."""
        return (set(self.__signature__.parameters) <= {"body"}
                and all(isinstance(stage, WITHOUT_FLASK) for stage in self.stages))

    @property
    def on_event_loop(self) -> bool:
        """Nothing here waits: a `@no_io` handler that takes no argument but its context,
        and only stages that neither wait nor need Flask's request."""
        return (getattr(self.handler, "no_io", False) and not self.__signature__.parameters
                and all(isinstance(stage, NON_BLOCKING) for stage in self.stages))

    @property
    def stage_names(self) -> list[str]:
        return [repr(stage) for stage in self.stages]

    def __repr__(self) -> str:
        return f"Pipeline({self.operation.operation_id}: {' > '.join(self.stage_names)})"


# Stages that do not use Flask's request.
WITHOUT_FLASK = (Authenticate, DocumentedErrors, RateLimitHeaders, Limit, Idempotent, UnitOfWork)
# Those of them that never wait on a dependency either. (UnitOfWork opens a session only
# when the handler uses one, which a `@no_io` handler does not.)
NON_BLOCKING = (Authenticate, DocumentedErrors, UnitOfWork)


def limited(operation: Operation) -> bool:
    """Refused only where the contract says so: an operation whose responses list no 429
    is not limited (WePeople's ping), unless its `x-rate-limit` says how a refusal is
    told otherwise (the chat stream's error event)."""
    documented = {str(code).upper() for code in operation.source.get("responses", {})}
    if documented & {"429", "4XX", "DEFAULT"}:
        return True
    return on_exceeded(operation) != REJECT


def on_exceeded(operation: Operation) -> str:
    declared = operation.source.get("x-rate-limit") or {}
    value = declared.get("on-exceeded", REJECT)
    if value not in (REJECT, STREAM_EVENT):
        raise ValueError(f"{operation.operation_id}: x-rate-limit.on-exceeded must be "
                         f"{REJECT!r} or {STREAM_EVENT!r}, not {value!r}")
    return value


def build_pipeline(operation: Operation, runtime: Runtime, handler) -> Pipeline:
    stages: list[Stage] = []
    if operation.required_scopes is not None:
        stages.append(Authenticate())
    # A key's refusal, named as the operation documents it: only operations that take a key.
    translate = foreign_key_translation(operation) if operation.required_scopes is not None else None
    if translate is not None:
        stages.append(DocumentedErrors(translate))
    policy = runtime.limit_policy(operation) if limited(operation) else None
    if policy is not None:
        if operation.api is runtime.contracts.wepeople:
            stages.append(RateLimitHeaders(runtime, operation.api))
        stages.append(Limit(runtime, operation, policy, on_exceeded(operation)))
    cache_control = operation.source.get("x-cache-control")
    if cache_control:
        stages.append(ConditionalCaching(cache_control))
    idempotency = Idempotency.for_operation(runtime.database, operation)
    if idempotency is not None:
        stages.append(Idempotent(idempotency))
    stages.append(UnitOfWork())
    return Pipeline(runtime, operation, stages, handler)


__all__ = ["ApiError", "Pipeline", "RequestContext", "build_pipeline", "no_io"]
