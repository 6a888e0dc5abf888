"""The app factory: one connexion FlaskApp serving both contracts."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import ipaddress
import logging

import connexion
import werkzeug.exceptions
from connexion import context as request_context
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.datastructures import MediaTypeDict
from connexion.resolver import Resolver
from connexion.utils import get_function_from_name
from flask import Response, abort, make_response
from flask import request as flask_request
from starlette.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from models.config import Settings
from handlers.runtime.cors import ChatbotCorsMiddleware
from handlers.runtime.docs import add_documentation
from handlers.runtime.documented import foreign_key_translation
from handlers.runtime.errors import ApiError, ErrorRenderer
from handlers.runtime.health import HealthMiddleware
from handlers.runtime.idempotency import Idempotency
from handlers.runtime.ratelimit import RateLimiter
from handlers.runtime.middleware import EdgeMiddleware, base_url_of, request_id_of
from handlers.runtime.security import AlpineChatAuth, VerifiedKeys, WePeopleAuth, bearer_handler
from models.key_usage import KeyUsage
from handlers.runtime.sse import ChatStreamMiddleware
from handlers.runtime.specs import ApiSpec, Contracts, Operation, load_contracts, snake_case
from handlers.runtime.validation import ParsedBodyRequest, body_validator_for, parameter_validator_for
from handlers.runtime.wsgi_bridge import QueuedWSGIMiddleware
from handlers.widget import add_widget_routes
from models.db import Database
from models.errors import DomainError
from models.migrate import ensure_sqlite_parent

log = logging.getLogger("app")


class Runtime:
    """What every request shares within one process; all truth lives in the database
    (and Redis when configured), never here."""

    def __init__(self, settings: Settings, contracts: Contracts, database: Database):
        self.settings = settings
        self.contracts = contracts
        self.database = database
        self.renderer = ErrorRenderer(contracts, settings.public_base_url)
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.limiter = RateLimiter(settings.redis_url, connect_timeout=settings.redis_connect_timeout,
                                   read_timeout=settings.redis_read_timeout, cooldown=settings.redis_retry_seconds)
        # The health probe pings the limiter's Redis: bounded timeouts, and while Redis is
        # down (limits then count in memory) it answers at once.
        self.redis = self.limiter.redis

    def limit_policy(self, operation: Operation):
        """The spec's rate limits for one operation, as a function of the request:
        WePeople `x-limits.rateLimits` per key and per organization; AlpineChat
        `x-rate-limit` per the listed identities (ip, chatbot)."""
        if operation.api is self.contracts.wepeople:
            if operation.required_scopes is None:
                return None
            budgets = operation.api.source["x-limits"]["rateLimits"]

            def wepeople_policy(principal, client_ip, params):
                # The headers speak of the key's budget. A request counts against the
                # organization only if its key's limit allows it (one Redis round trip).
                per_key, per_org = self.limiter.hit_all(
                    (budgets["perKey"], "wp-key", principal["key_id"]),
                    (budgets["perOrganization"], "wp-org", principal["organization_id"]))
                if not per_org.allowed:  # the organization is full: retry when both have room
                    return dataclasses.replace(per_org, limit=per_key.limit, remaining=0,
                                               retry_after=max(per_key.retry_after, per_org.retry_after))
                return per_key

            return wepeople_policy
        declared = operation.source.get("x-rate-limit")
        if not declared:
            return None

        def identity_policy(principal, client_ip, params):
            identity = {"ip": client_ip, "chatbot": params.get("slug", "")}
            parts = [str(identity[name]) for name in declared["per"]]
            return self.limiter.hit(declared["limit"], operation.operation_id, *parts)

        return identity_policy

    def rate_limited(self, operation: Operation, decision) -> ApiError:
        headers = decision.headers()
        if operation.api is self.contracts.wepeople:
            return ApiError("rate_limited",
                            f"Rate limit exceeded; retry in {decision.retry_after}s.", headers=headers)
        return ApiError("rate_limited", headers={"Retry-After": headers["Retry-After"]})

    def client_ip(self, scope) -> str:
        """The socket peer, unless it is a trusted proxy: then the right-most
        X-Forwarded-For hop that is not itself a trusted proxy."""
        peer = (scope.get("client") or ("0.0.0.0", 0))[0]
        if not self._trusted(peer):
            return peer
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                for hop in reversed(hops):
                    if not _is_ip(hop):
                        break  # a malformed chain: believe only the socket
                    if not self._trusted(hop):
                        return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def handler_name(api: ApiSpec, operation: dict) -> str:
    """handlers.<api>.<first tag, snake_case>.<operationId, snake_case>"""
    return f"handlers.{api.name}.{snake_case(operation['tags'][0])}.{snake_case(operation['operationId'])}"


class HandlerResolver(Resolver):
    """Resolves each operation to its handler and wraps it in the request's unit of
    work: one session, committed when the handler returns, rolled back when it raises.
    Handlers ask by parameter name for `db`, `principal`, `request_id`, `client_ip`,
    `redis`, `settings`, `contract` (their API's spec) or `rate_limit` (the limit
    decision, handed over instead of a 429 for operations that document none)."""

    def __init__(self, api: ApiSpec, runtime: Runtime):
        super().__init__()
        self.api = api
        self.runtime = runtime
        self._operations: dict[str, Operation] = {}

    def resolve_operation_id(self, operation) -> str:
        name = handler_name(self.api, operation._operation)
        self._operations[name] = self.api.operations[operation._operation["operationId"]]
        return name

    def resolve_function_from_operation_id(self, operation_id: str):
        return self.wrap(get_function_from_name(operation_id), self._operations[operation_id])

    def wrap(self, handler, operation: Operation):
        wanted = set(inspect.signature(handler).parameters)
        runtime = self.runtime
        cache_control = operation.source.get("x-cache-control")
        # Refused only where the contract says so: an operation whose responses list no 429
        # is not limited (WePeople's ping), unless its handler expresses a refusal its own
        # way (the chat stream's error event).
        documented = {str(code).upper() for code in operation.source.get("responses", {})}
        limited = bool(documented & {"429", "4XX", "DEFAULT"}) or "rate_limit" in wanted
        limit_policy = runtime.limit_policy(operation) if limited else None
        idempotency = Idempotency.for_operation(runtime.database, operation)
        as_documented = foreign_key_translation(operation)

        @functools.wraps(handler)
        def unit_of_work(*args, **kwargs):
            scope = request_context.scope
            principal = request_context.context.get("token_info")
            client_ip = runtime.client_ip(scope)
            decision = limit_policy(principal, client_ip, kwargs) if limit_policy else None
            if decision is not None and not decision.allowed and "rate_limit" not in wanted:
                raise runtime.rate_limited(operation, decision)
            injected = {
                "principal": principal,
                "request_id": request_id_of(scope),
                "client_ip": client_ip,
                "redis": runtime.redis,
                "rate_limit": decision,
                "settings": runtime.settings,
                "contract": operation.api,
            }
            kwargs.update({name: value for name, value in injected.items() if name in wanted})

            def execute(before_commit=None):
                # before_commit(session, result): idempotency stores the response in the same transaction.
                if "db" not in wanted and before_commit is None:
                    return handler(*args, **kwargs)
                with runtime.database.unit_of_work() as session:
                    if "db" in wanted:
                        kwargs["db"] = session
                    result = handler(*args, **kwargs)
                    return before_commit(session, result) if before_commit else result

            try:
                result = idempotency.run(principal, kwargs.get("body"), execute) if idempotency else execute()
            except DomainError as error:
                if (decision is not None and operation.api is runtime.contracts.wepeople
                        and runtime.renderer.status_for(operation.api, error.code) == 429):
                    # A quota 429 from the domain carries X-RateLimit-* like every other 429.
                    error.headers = {**decision.headers(), **error.headers}
                if as_documented is not None:
                    raise as_documented(error)
                raise
            if cache_control:
                result = conditional(result, cache_control)
            if decision is not None and operation.api is runtime.contracts.wepeople:
                result = make_response(result)
                if result.status_code < 300:
                    result.headers.update(decision.headers())
            return result

        return unit_of_work


def conditional(result, cache_control: str) -> Response:
    """Spec-declared caching (`x-cache-control`): Cache-Control, a strong ETag over the
    body, and 304 when the client's If-None-Match matches."""
    response = make_response(result)
    if response.status_code == 200:
        response.headers["Cache-Control"] = cache_control
        response.add_etag()
        response.make_conditional(flask_request)
    return response


def _error_handler(runtime: Runtime):
    def handle(request, exc: Exception) -> ConnexionResponse:
        scope = request.scope
        api = runtime.contracts.for_path(scope["path"])
        status, headers, body = runtime.renderer.render(
            api, exc, request_id=request_id_of(scope), base_url=base_url_of(scope),
            method=scope["method"], path=scope["path"],
        )
        if status == 405:
            headers.setdefault("Allow", ", ".join(_allowed_methods(runtime.contracts, scope["path"])))
        return ConnexionResponse(status_code=status, body=body, headers=headers,
                                 content_type="application/json", mimetype="application/json")

    return handle


def _allowed_methods(contracts: Contracts, path: str) -> list[str]:
    methods = set()
    for api in contracts:
        for operation in api.operations.values():
            if operation.path_regex.match(path):
                methods.add(operation.method)
    return sorted(methods)


def _flask_http_exception(exc: werkzeug.exceptions.HTTPException):
    """Flask's own failures (on this app's pages) with their headers: connexion re-raises
    them as starlette errors without any, so a 405 lost its Allow and a redirect its
    Location."""
    if isinstance(exc, RequestRedirect):
        return exc.get_response()
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    raise HTTPException(exc.code or 500, detail=exc.description, headers=headers or None)


def _only_operations_connexion_routed() -> None:
    """connexion's router decides which operation runs. Flask's own rules can match a path
    that router did not (a newline in a path parameter escapes starlette's base-path
    `Mount`): that is a path with no operation, 404, not a handler run without one."""
    if flask_request.blueprint is None:
        return  # this app's own pages (documentation, published contracts)
    try:
        request_context.operation.operation_id
    except RuntimeError:
        abort(404)


def create_app(settings: Settings | None = None, *, database: Database | None = None,
               contracts: Contracts | None = None) -> connexion.FlaskApp:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    contracts = contracts or load_contracts()
    if database is None:
        ensure_sqlite_parent(settings.database_url)
        database = Database(settings.database_url, pool_size=settings.db_pool_size,
                            max_overflow=settings.db_max_overflow,
                            connect_timeout=settings.db_connect_timeout, pool_timeout=settings.db_pool_timeout,
                            statement_timeout=settings.db_statement_timeout)
    runtime = Runtime(settings, contracts, database)
    # Each key's last use, written by a background thread at most once a minute, and at shutdown.
    key_usage = KeyUsage(database)

    app = connexion.FlaskApp(__name__, lifespan=key_usage.flushed_at_shutdown)
    # connexion builds a2wsgi's bridge with its default 10 threads; this one is sized from
    # config and does not hold a thread while the loop sends the response.
    app._middleware_app.asgi_app = QueuedWSGIMiddleware(app.app.wsgi_app, workers=settings.wsgi_threads)
    app.app.extensions["runtime"] = runtime
    app.app.request_class = ParsedBodyRequest  # the body is parsed once, by the validator
    app.app.before_request(_only_operations_connexion_routed)
    app.app.register_error_handler(werkzeug.exceptions.HTTPException, _flask_http_exception)
    no_console = SwaggerUIOptions(serve_spec=False, swagger_ui=False)
    authenticators = {
        "wepeople": WePeopleAuth(database, contracts.wepeople),
        "alpinechat": AlpineChatAuth(database),
    }
    app.app.extensions["key_usage"] = key_usage
    for api in contracts:
        validator_map = {
            "parameter": parameter_validator_for(api),
            "body": MediaTypeDict({"*/*json": body_validator_for(api)}),
        }
        app.add_api(
            api.bundle,
            name=api.name,
            resolver=HandlerResolver(api, runtime),
            validator_map=validator_map,
            security_map={"bearer": bearer_handler(authenticators[api.name],
                                                   VerifiedKeys(settings.auth_cache_seconds),
                                                   functools.partial(key_usage.note, api.name))},
            strict_validation=True,
            validate_responses=False,
            pythonic_params=True,
            swagger_ui_options=no_console,
        )

    handle = _error_handler(runtime)
    for exc_type in (ProblemException, HTTPException, Exception):
        app.add_error_handler(exc_type, handle)
    app.add_middleware(EdgeMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       contracts=contracts, renderer=runtime.renderer, settings=settings)
    # Inside the edge layer (responses get request ids), before routing (answers preflights).
    app.add_middleware(ChatbotCorsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       contracts=contracts, database=database, renderer=runtime.renderer)
    # Inside exception handling, before routing: streams chat turns on the event loop.
    app.add_middleware(ChatStreamMiddleware, position=MiddlewarePosition.BEFORE_SWAGGER, runtime=runtime)
    # The health probe on the event loop: it needs no WSGI thread (all may be stuck in an outage).
    app.add_middleware(HealthMiddleware, position=MiddlewarePosition.BEFORE_SWAGGER, runtime=runtime)
    add_documentation(app, contracts, settings.public_base_url)
    add_widget_routes(app, runtime)
    return app
