"""What handlers/runtime/adapters.py (and http_protocol.py) assume about their
dependencies' private parts. Each failure names the dependency, its installed version and
the assumption, so that a new version (a wider pin in setup.cfg) is judged by this test."""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from importlib.metadata import version

import pytest


def broken(dependency: str, assumption: str) -> str:
    return (f"{dependency} {version(dependency)} no longer provides {assumption}; "
            f"handlers/runtime/adapters.py (or http_protocol.py) relies on it: adapt it, or pin {dependency} "
            "below this version in setup.cfg")


def require(condition: bool, dependency: str, assumption: str) -> None:
    if not condition:
        pytest.fail(broken(dependency, assumption), pytrace=False)


def test_connexion_records_the_routed_operation_in_the_scope():
    from connexion.middleware import abstract, routing

    require(getattr(abstract, "ROUTING_CONTEXT", None) == "connexion_routing", "connexion",
            "connexion.middleware.abstract.ROUTING_CONTEXT == 'connexion_routing'")
    source = inspect.getsource(routing.RoutingOperation.__call__)
    require("ROUTING_CONTEXT" in source and '"operation_id"' in source, "connexion",
            "RoutingOperation writing scope['extensions'][ROUTING_CONTEXT]['operation_id']")


def test_connexion_routes_to_the_resolved_name_and_the_adapter_reads_it(client):
    """End to end: the routed operation reaches the layers after the router."""
    from handlers.runtime.adapters import routed_operation_id

    require(routed_operation_id({"extensions": {"connexion_routing": {"operation_id": "a.b"}}}) == "a.b",
            "connexion", "the routing extension's shape")
    response = client.get("/api/v1/ingest/ping")
    assert response.status_code == 401  # routed to the operation: its security ran


def test_connexion_flask_app_runs_flask_under_a_replaceable_a2wsgi_bridge():
    import connexion
    from a2wsgi import WSGIMiddleware

    from handlers.runtime import adapters

    app = connexion.FlaskApp(__name__)
    require(hasattr(app, "_middleware_app") and hasattr(app._middleware_app, "asgi_app"), "connexion",
            "FlaskApp._middleware_app.asgi_app (the ASGI bridge around Flask)")
    require(isinstance(adapters.wsgi_bridge_of(app), WSGIMiddleware), "connexion",
            "an a2wsgi WSGIMiddleware as FlaskApp's bridge")
    replacement = adapters.QueuedWSGIMiddleware(app.app.wsgi_app, workers=2)
    adapters.install_wsgi_bridge(app, replacement)
    require(adapters.wsgi_bridge_of(app) is replacement, "connexion", "a settable FlaskApp bridge")


def test_a2wsgi_responder_internals():
    from a2wsgi import WSGIMiddleware
    from a2wsgi.wsgi import WSGIResponder

    parameters = list(inspect.signature(WSGIResponder.__init__).parameters)
    require(parameters[:4] == ["self", "app", "executor", "send_queue_size"], "a2wsgi",
            "WSGIResponder(app, executor, send_queue_size)")
    for method in ("send", "sender", "__call__"):
        require(callable(getattr(WSGIResponder, method, None)), "a2wsgi", f"WSGIResponder.{method}")
    require(inspect.iscoroutinefunction(WSGIResponder.sender), "a2wsgi", "an async WSGIResponder.sender(send)")
    middleware = WSGIMiddleware(lambda environ, start_response: [], workers=1)
    for attribute in ("app", "executor", "send_queue_size"):
        require(hasattr(middleware, attribute), "a2wsgi", f"WSGIMiddleware.{attribute}")
    # Operations run without Flask share this pool (QueuedWSGIMiddleware.run_in_pool).
    require(isinstance(middleware.executor, concurrent.futures.Executor), "a2wsgi",
            "WSGIMiddleware.executor, a concurrent.futures executor")
    middleware.executor.shutdown()

    async def build():
        return WSGIResponder(lambda environ, start_response: [], None, 4)

    responder = asyncio.run(build())
    for attribute in ("loop", "send_queue"):
        require(hasattr(responder, attribute), "a2wsgi", f"WSGIResponder.{attribute}")
    source = inspect.getsource(WSGIResponder.__call__)
    require("self.sender(" in source and "self.send" in source, "a2wsgi",
            "WSGIResponder.__call__ running self.sender and handing messages to self.send")


def test_uvicorn_httptools_protocol_internals():
    from uvicorn.protocols.http import httptools_impl

    protocol = httptools_impl.HttpToolsProtocol
    for method in ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_url",
                   "on_header", "on_headers_complete", "on_message_complete", "on_response_complete",
                   "_unset_keepalive_if_required"):
        require(callable(getattr(protocol, method, None)), "uvicorn", f"HttpToolsProtocol.{method}")
    init = inspect.getsource(protocol.__init__)
    for attribute in ("parser", "cycle", "transport", "flow", "server_state", "app_state", "pipeline",
                      "logger", "access_logger", "access_log", "root_path"):
        require(f"self.{attribute}" in init or attribute in inspect.getsource(protocol), "uvicorn",
                f"HttpToolsProtocol.{attribute}")
    cycle = list(inspect.signature(httptools_impl.RequestResponseCycle.__init__).parameters)
    expected = ["scope", "transport", "flow", "logger", "access_logger", "access_log", "default_headers",
                "message_event", "expect_100_continue", "keep_alive", "on_response"]
    require(all(name in cycle for name in expected), "uvicorn",
            f"RequestResponseCycle({', '.join(expected)})")
