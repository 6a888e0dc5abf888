"""handlers/runtime/pipeline.py and routing.py: each operation's stages come from its
spec, are built once at start-up, and every request is routed once (by connexion)."""
from __future__ import annotations

import inspect

import pytest

from handlers.runtime.pipeline import RequestContext, on_exceeded
from handlers.runtime.specs import load_contracts


@pytest.fixture(scope="module")
def pipelines(app):
    runtime = app.app.extensions["runtime"]
    return {pipeline.operation.operation_id: pipeline for pipeline in runtime.pipelines.values()}


def stages(pipelines, operation_id: str) -> list[str]:
    return pipelines[operation_id].stage_names


def test_every_operation_gets_one_pipeline_built_at_start_up(app, pipelines):
    contracts = app.app.extensions["runtime"].contracts
    assert set(pipelines) == {op for api in contracts for op in api.operations}
    # connexion resolves each operation once per middleware: all get the same pipeline.
    runtime = app.app.extensions["runtime"]
    assert len(runtime.pipelines) == len(pipelines)


def test_stages_follow_the_spec(pipelines):
    # WePeople's ping documents no 429: authenticated, not limited, no idempotency.
    assert stages(pipelines, "ping") == ["Authenticate", "UnitOfWork"]
    # Ingest: limited per key and organization, X-RateLimit-* headers, Idempotency-Key.
    assert stages(pipelines, "ingestEvents") == [
        "Authenticate", "RateLimitHeaders", "Limit(reject)", "Idempotent", "UnitOfWork"]
    assert stages(pipelines, "ingestSnapshot") == [
        "Authenticate", "RateLimitHeaders", "Limit(reject)", "Idempotent", "UnitOfWork"]
    # The widget's config: public, cached by the spec's x-cache-control.
    assert stages(pipelines, "getWidgetConfig") == ["ConditionalCaching", "UnitOfWork"]
    # The health probe: nothing but its handler's (lazy) unit of work.
    assert stages(pipelines, "getHealthz") == ["UnitOfWork"]
    # The chat turn: x-rate-limit.on-exceeded: stream-event (no 429 documented).
    chat = stages(pipelines, "postChat")
    assert "Limit(stream-event)" in chat and "RateLimitHeaders" not in chat
    # Leads: limited with a 429, and a key of another tenant is the documented 403.
    assert "Limit(reject)" in stages(pipelines, "postLead")
    # Conversations list AlpineChat's Forbidden response; escalations do not: there a key
    # of another tenant is the documented 401.
    assert stages(pipelines, "getConversations") == ["Authenticate", "UnitOfWork"]
    assert "DocumentedErrors" in stages(pipelines, "postEscalate")


def test_a_limit_is_declared_in_the_spec_not_by_a_parameter_name():
    contracts = load_contracts()
    chat = contracts.alpinechat.operations["postChat"]
    assert chat.source["x-rate-limit"]["on-exceeded"] == "stream-event"
    assert on_exceeded(contracts.alpinechat.operations["postLead"]) == "reject"
    bad = type(chat)(chat.api, "x", "POST", "/x", {"x-rate-limit": {"limit": "1/hour", "per": ["ip"],
                                                                    "on-exceeded": "teapot"}})
    with pytest.raises(ValueError, match="on-exceeded"):
        on_exceeded(bad)


def test_handlers_take_a_request_context_and_connexion_sees_only_their_parameters(pipelines):
    for operation_id, pipeline in pipelines.items():
        parameters = list(inspect.signature(pipeline.handler).parameters)
        assert parameters[0] == "ctx", operation_id
        hints = inspect.signature(pipeline.handler).parameters["ctx"].annotation
        assert hints in (RequestContext, "RequestContext"), operation_id
        assert "ctx" not in inspect.signature(pipeline).parameters
        # No injection by name any more.
        assert not {"db", "principal", "rate_limit", "redis", "request_id"} & set(parameters), operation_id


def test_the_composition_root_builds_the_chat_engine(app):
    runtime = app.app.extensions["runtime"]
    assert runtime.chat_engine is not None
    assert runtime.chat_engine.database is runtime.database


class CountingPattern:
    def __init__(self, pattern, counter: list):
        self.pattern = pattern
        self.counter = counter

    def match(self, text):
        self.counter.append(text)
        return self.pattern.match(text)


def test_a_request_is_routed_once_by_connexion(app, monkeypatch):
    """No layer of ours matches paths by regex for a request without a body: connexion's
    router decides, and CORS, the chat stream, the health probe, validation and the
    pipeline read its result. The edge looks up the operation of a body (its cap and
    coding come before the router): once."""
    runtime = app.app.extensions["runtime"]
    matches: list = []
    for api in runtime.contracts:
        for operation in api.operations.values():
            monkeypatch.setitem(operation.__dict__, "path_regex", CountingPattern(operation.path_regex, matches))
    with app.test_client() as client:
        assert client.get("/api/v1/ingest/ping").status_code == 401
        assert client.get("/api/widget-config/no-such-bot", headers={"Origin": "https://a.example"}).status_code == 404
        assert client.get("/api/healthz").status_code in (200, 503)
        assert matches == []
        client.post("/api/feedback/no-such-bot", json={"conversation_id": "x", "rating": 1})
        assert len(matches) <= len(runtime.contracts.alpinechat.operations)  # the edge's one lookup
        matches.clear()


def test_later_layers_read_the_routed_operation(app):
    from handlers.runtime.routing import OPERATION
    seen = {}

    async def probe(scope, receive, send):
        seen["operation"] = scope["state"].get(OPERATION)

    runtime = app.app.extensions["runtime"]
    ping = runtime.contracts.wepeople.operations["ping"]
    routed = [name for name, operation in runtime.routes.by_name.items() if operation is ping]
    assert routed == ["handlers.wepeople.ingest.ping"]


def test_each_app_has_its_own_middleware_stack(app, settings, database):
    """connexion inserts added middlewares into the list it is given: a shared list
    stacked every app's layers into the next app (two edges, two request ids)."""
    from connexion.middleware.swagger_ui import SwaggerUIMiddleware

    from handlers.runtime.app import create_app

    other = create_app(settings, database=database)
    layers = [getattr(m, "func", m) for m in other.middleware.middlewares]
    assert layers == [getattr(m, "func", m) for m in app.middleware.middlewares]
    assert len(layers) == len(set(layers))
    assert SwaggerUIMiddleware not in layers  # no console: its router would only cost


def test_only_io_free_handlers_without_arguments_or_waiting_stages_run_on_the_event_loop(pipelines):
    from handlers.runtime.pipeline import Authenticate, Limit, Pipeline, UnitOfWork, no_io

    operation = pipelines["ping"].operation

    @no_io
    def bare(ctx):
        return {}

    @no_io
    def with_argument(ctx, slug):
        return {}

    def unmarked(ctx):
        return {}

    def on_loop(handler, stages):
        return Pipeline(None, operation, stages, handler).on_event_loop

    assert on_loop(bare, [Authenticate(), UnitOfWork()])
    assert not on_loop(with_argument, [Authenticate(), UnitOfWork()])
    assert not on_loop(unmarked, [Authenticate(), UnitOfWork()])
    assert not on_loop(bare, [Authenticate(), Limit(None, operation, None, "reject"), UnitOfWork()])


def test_pipelines_run_without_flask_when_the_handler_takes_at_most_a_body_and_no_stage_reads_flask(pipelines):
    from handlers.runtime.pipeline import (
        Authenticate,
        ConditionalCaching,
        Idempotent,
        Limit,
        Pipeline,
        RateLimitHeaders,
        UnitOfWork,
    )

    operation = pipelines["ingestEvents"].operation

    def with_body(ctx, body):
        return {}

    def with_slug(ctx, slug, body):
        return {}

    def without_flask(handler, stages):
        return Pipeline(None, operation, stages, handler).without_flask

    waiting = [Authenticate(), RateLimitHeaders.__new__(RateLimitHeaders), Limit(None, operation, None, "reject"),
               Idempotent(None), UnitOfWork()]
    assert without_flask(with_body, waiting)
    assert not without_flask(with_slug, waiting)  # parameters: connexion's argument passing, under Flask
    assert not without_flask(with_body, [Authenticate(), ConditionalCaching("no-cache"), UnitOfWork()])
    assert not Pipeline(None, operation, waiting, with_body).on_event_loop


def test_after_commit_callbacks_run_once_the_unit_of_work_commits_and_not_after_a_rollback(pipelines):
    import sqlalchemy

    from handlers.runtime.pipeline import UnitOfWork

    pipeline = pipelines["ingestEvents"]
    ctx = RequestContext(pipeline.runtime, pipeline.operation, {"type": "http", "headers": []})
    seen: list[str] = []

    def handler(ctx, kwargs):
        ctx.db.execute(sqlalchemy.text("SELECT 1"))
        sqlalchemy.event.listen(ctx.db, "after_commit", lambda session: seen.append("committed"))
        ctx.after_commit(lambda: seen.append("callback"))
        if kwargs.get("fail"):
            raise ValueError("rolled back")
        return "result"

    stage = UnitOfWork()
    stage.next = handler
    with pytest.raises(ValueError):
        stage(ctx, {"fail": True})
    assert seen == []  # rolled back: no callback, and none left over for the next run
    assert stage(ctx, {}) == "result"
    assert seen == ["committed", "callback"]
