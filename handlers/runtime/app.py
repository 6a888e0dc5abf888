"""The app factory: one connexion FlaskApp serving both contracts."""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging

import connexion
import werkzeug.exceptions
from connexion import context as request_context
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from connexion.utils import get_function_from_name
from flask import abort
from flask import request as flask_request
from starlette.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from handlers.runtime import adapters
from handlers.runtime.adapters import QueuedWSGIMiddleware
from handlers.runtime.cors import ChatbotCorsMiddleware
from handlers.runtime.direct import DirectOperations
from handlers.runtime.docs import add_documentation
from handlers.runtime.errors import ApiError, ErrorRenderer
from handlers.runtime.health import HealthMiddleware
from handlers.runtime.jsonifier import JSONIFIER
from handlers.runtime.middleware import EdgeMiddleware, base_url_of, request_id_of
from handlers.runtime.pipeline import Pipeline, build_pipeline
from handlers.runtime.ratelimit import RateLimiter
from handlers.runtime.routing import PREFLIGHT, RoutedOperationMiddleware, Routes
from handlers.runtime.security import (
    AlpineChatAuth,
    VerifiedKeys,
    WePeopleAuth,
    bearer_handler,
)
from handlers.runtime.specs import (
    ApiSpec,
    Contracts,
    Operation,
    load_contracts,
    snake_case,
)
from handlers.runtime.sse import ChatStreamMiddleware, build_chat_engine
from handlers.runtime.validation import (
    ParsedBodyRequest,
    RequestValidation,
    body_validator_for,
    parameter_validator_for,
)
from handlers.widget import add_widget_routes
from models import logs
from models.chat.turn import ChatEngine
from models.config import Settings
from models.db import Database
from models.key_usage import KeyUsage
from models.migrate import ensure_sqlite_parent

log = logging.getLogger("app")


class Runtime:
    """What every request shares within one process; all truth lives in the database
    (and Redis when configured), never here."""

    def __init__(self, settings: Settings, contracts: Contracts, database: Database):
        self.settings = settings
        self.contracts = contracts
        self.database = database
        self.renderer = ErrorRenderer(contracts, settings.public_base_url, database_outage=self.database.outage)
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.limiter = RateLimiter(settings.redis_url, connect_timeout=settings.redis_connect_timeout,
                                   read_timeout=settings.redis_read_timeout, cooldown=settings.redis_retry_seconds)
        # The health probe pings the limiter's Redis: bounded timeouts, and while Redis is
        # down (limits then count in memory) it answers at once.
        self.redis = self.limiter.redis
        # Filled at start-up by the resolvers: the operation connexion routes to, by name,
        # and each operation's pipeline.
        self.routes = Routes(contracts)
        self.pipelines: dict[str, Pipeline] = {}
        # Built by the composition root (create_app); tests replace it (sse.configure_chat).
        self.chat_engine: ChatEngine | None = None

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


# connexion's stack less two layers that would only cost: the Swagger UI layer (no console,
# no spec served by it: handlers/runtime/docs.py serves both) routes every request through
# a router of its own, and responses are not validated at run time (tests/api's response
# oracle checks them). Its request validation is built per operation at start-up.
MIDDLEWARES = tuple(RequestValidation if middleware is RequestValidationMiddleware else middleware
                    for middleware in ConnexionMiddleware.default_middlewares
                    if middleware not in (SwaggerUIMiddleware, ResponseValidationMiddleware))


def handler_name(api: ApiSpec, operation: dict) -> str:
    """handlers.<api>.<first tag, snake_case>.<operationId, snake_case>"""
    return f"handlers.{api.name}.{snake_case(operation['tags'][0])}.{snake_case(operation['operationId'])}"


class HandlerResolver(Resolver):
    """Resolves each operation to its handler wrapped in the operation's pipeline
    (handlers/runtime/pipeline.py), built here, once, from the spec."""

    def __init__(self, api: ApiSpec, runtime: Runtime):
        super().__init__()
        self.api = api
        self.runtime = runtime

    def resolve_operation_id(self, operation) -> str:
        # During resolution, connexion's operation_id is the spec's operationId.
        return operation_name(self.api.operations[operation.operation_id])

    def resolve_function_from_operation_id(self, operation_id: str):
        return self.runtime.pipelines[operation_id]


def operation_name(operation: Operation) -> str:
    return handler_name(operation.api, operation.source | {"operationId": operation.operation_id})


def build_pipelines(runtime: Runtime) -> None:
    """Every operation's pipeline, once, at start-up; and the names connexion routes to."""
    for api in runtime.contracts:
        for operation in api.operations.values():
            name = operation_name(operation)
            runtime.routes.add(name, operation)
            runtime.pipelines[name] = build_pipeline(operation, runtime, get_function_from_name(name))


def _error_handler(runtime: Runtime):
    def handle(request, exc: Exception) -> ConnexionResponse:
        scope = request.scope
        api = runtime.contracts.for_path(scope["path"])
        # A CORS preflight is routed as the method it asks about: its errors name OPTIONS.
        method = scope.get("state", {}).get(PREFLIGHT) or scope["method"]
        status, headers, body = runtime.renderer.render(
            api, exc, request_id=request_id_of(scope), base_url=base_url_of(scope),
            method=method, path=scope["path"],
        )
        if status == 405:
            headers.setdefault("Allow", ", ".join(runtime.routes.allowed_methods(scope["path"])))
        return ConnexionResponse(status_code=status, body=body, headers=headers,
                                 content_type="application/json", mimetype="application/json")

    return handle


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
        request_context.operation.operation_id  # noqa: B018 - raises RuntimeError when connexion routed nothing
    except RuntimeError:
        abort(404)


def create_app(settings: Settings | None = None, *, database: Database | None = None,
               contracts: Contracts | None = None) -> connexion.FlaskApp:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
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

    app = connexion.FlaskApp(__name__, lifespan=key_usage.flushed_at_shutdown,
                             middlewares=list(MIDDLEWARES))  # connexion adds ours to this list
    # connexion builds a2wsgi's bridge with its default 10 threads; this one is sized from
    # config and does not hold a thread while the loop sends the response.
    bridge = QueuedWSGIMiddleware(app.app.wsgi_app, workers=settings.wsgi_threads)
    adapters.install_wsgi_bridge(app, bridge)
    # The composition root: the chat engine is built here and held by the runtime.
    runtime.chat_engine = build_chat_engine(runtime)
    build_pipelines(runtime)
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
            jsonifier=JSONIFIER,  # Flask's bytes, written by orjson
        )

    handle = _error_handler(runtime)
    for exc_type in (ProblemException, HTTPException, Exception):
        app.add_error_handler(exc_type, handle)
    # Outermost: request ids, screening, the body (cap, deadlines, codings); renders its own failures.
    app.add_middleware(EdgeMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       contracts=contracts, renderer=runtime.renderer, settings=settings)
    # Outside exception handling (errors get CORS headers too); decides by the routed operation.
    app.add_middleware(ChatbotCorsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       contracts=contracts, database=database, renderer=runtime.renderer, routes=runtime.routes)
    # After connexion's router, which routes each request once: the operation it found,
    # for every later stage (handlers/runtime/routing.py).
    app.add_middleware(RoutedOperationMiddleware, position=MiddlewarePosition.BEFORE_SECURITY,
                       routes=runtime.routes)
    # The health probe on the event loop: it needs no WSGI thread (all may be stuck in an outage).
    app.add_middleware(HealthMiddleware, position=MiddlewarePosition.BEFORE_SECURITY, runtime=runtime)
    # Streams chat turns on the event loop.
    app.add_middleware(ChatStreamMiddleware, position=MiddlewarePosition.BEFORE_SECURITY, runtime=runtime)
    # Last before connexion's context: operations that need no Flask request, run on the
    # loop (ping) or in the bridge's thread pool (ingest).
    app.add_middleware(DirectOperations, position=MiddlewarePosition.BEFORE_CONTEXT,
                       runtime=runtime, bridge=bridge)
    add_documentation(app, contracts, settings.public_base_url)
    add_widget_routes(app, runtime)
    return app
