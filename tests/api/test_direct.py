"""handlers/runtime/direct.py: operations that need no Flask request are answered from the
ASGI side (ping on the event loop, the ingest operations in the bridge's thread pool),
with the bytes and headers the Flask path gives."""
from __future__ import annotations

import pytest

from handlers.runtime.app import create_app
from handlers.runtime.pipeline import Pipeline, RequestContext
from tests.api.wepeople.helpers import EVENTS, SNAPSHOTS, event, new_key

PING = "/api/v1/ingest/ping"
# Differ from request to request (or from key to key), by name only.
PER_REQUEST = {"x-request-id", "date", "x-ratelimit-remaining", "x-ratelimit-reset"}


def _without_ids(value):
    """The answer without what names its own request, key or worker."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("requestId", "id", "workerId")}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _flask_seen(app) -> list[str]:
    seen: list[str] = []
    app.app.before_request(lambda: seen.append("flask"))
    return seen


def _through_flask(monkeypatch):
    monkeypatch.setattr(Pipeline, "without_flask", property(lambda self: False))
    monkeypatch.setattr(Pipeline, "on_event_loop", property(lambda self: False))


def _assert_same(direct, flask):
    assert direct.status_code == flask.status_code, (direct.text, flask.text)
    assert _without_ids(direct.json()) == _without_ids(flask.json())
    assert {k.lower() for k in direct.headers.keys()} - PER_REQUEST == {
        k.lower() for k in flask.headers.keys()} - PER_REQUEST
    assert direct.headers["content-length"] == str(len(direct.content))


def test_operations_without_flask_are_the_pings_on_the_loop_and_ingest_in_the_pool(app):
    pipelines = app.app.extensions["runtime"].pipelines.values()
    assert sorted(p.operation.operation_id for p in pipelines if p.without_flask) == [
        "getHealthz", "getPing", "ingestEvents", "ingestSnapshot", "ping"]
    assert sorted(p.operation.operation_id for p in pipelines if p.on_event_loop) == ["getPing", "ping"]


def _serve_ping(app, headers: dict) -> list:
    with app.test_client() as client:
        return [client.get(PING, headers=headers), client.get(PING),
                client.get(PING, headers={"Authorization": "Bearer wp_live_unknown"})]


def test_ping_is_answered_on_the_loop_as_flask_would(settings, database, make_ingest_key, monkeypatch):
    made = make_ingest_key()
    direct_app = create_app(settings, database=database)
    direct_seen = _flask_seen(direct_app)
    on_loop = _serve_ping(direct_app, made.headers)

    _through_flask(monkeypatch)
    flask_app = create_app(settings, database=database)
    flask_seen = _flask_seen(flask_app)
    through_flask = _serve_ping(flask_app, made.headers)

    assert direct_seen == [] and flask_seen == ["flask"]  # only the 200 reaches a handler
    for loop, flask in zip(on_loop, through_flask, strict=True):
        _assert_same(loop, flask)
        assert loop.content == flask.content or loop.status_code != 200
    assert [a.status_code for a in on_loop] == [200, 401, 401]
    assert on_loop[0].json()["app"]["slug"] == made.app_slug


def _serve_ingest(app, headers: dict) -> list:
    """One of each answer the pipeline gives: accepted, partly rejected, a replay, a key
    reused for another body, a snapshot, an event batch past the contract's envelope."""
    key = new_key()
    batch = {"events": [event(n) for n in range(3)]}
    with app.test_client() as client:
        def post(path, body, idempotency_key=None):
            extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
            return client.post(path, json=body, headers={**headers, **extra})

        return [
            post(EVENTS, batch, key),
            post(EVENTS, batch, key),  # replayed
            post(EVENTS, {"events": [event(9)]}, key),  # the key, another body
            post(EVENTS, {"events": [event(1), event(2, eventType="NOT VALID"), event(3, actor={})]}),
            post(EVENTS, {"events": [event(4, category="no-such-category")]}),
            post(SNAPSHOTS, {"snapshotType": "capacity", "actor": {"email": "snap@acme.example"},
                             "capturedAt": "2026-04-19T12:00:00Z", "metrics": {"utilization": 0.5}}),
            post(EVENTS, {"events": []}),
        ]


def test_ingest_runs_in_the_pool_as_it_runs_under_flask(settings, database, make_ingest_key, monkeypatch):
    direct_app = create_app(settings, database=database)
    direct_seen = _flask_seen(direct_app)
    direct = _serve_ingest(direct_app, make_ingest_key().headers)

    _through_flask(monkeypatch)
    flask_app = create_app(settings, database=database)
    flask_seen = _flask_seen(flask_app)
    through_flask = _serve_ingest(flask_app, make_ingest_key().headers)

    assert direct_seen == []
    assert len(flask_seen) == 7  # a batch's envelope is checked where its body is parsed
    assert [a.status_code for a in direct] == [202, 202, 400, 207, 207, 202, 400]
    for answer, flask in zip(direct, through_flask, strict=True):
        _assert_same(answer, flask)
    first, replay = direct[0], direct[1]
    assert replay.content == first.content and replay.headers["Idempotent-Replayed"] == "true"
    assert first.headers["X-RateLimit-Limit"] == through_flask[0].headers["X-RateLimit-Limit"]


def test_a_key_first_used_under_flask_replays_without_it(settings, database, make_ingest_key, monkeypatch):
    """The request's method, path and body hash the same on both paths: a record stored by
    one (a worker not yet upgraded, say) replays on the other."""
    made = make_ingest_key()
    key, body = new_key(), {"events": [event(7)]}
    direct_app = create_app(settings, database=database)
    with monkeypatch.context() as patch:
        _through_flask(patch)
        with create_app(settings, database=database).test_client() as client:
            first = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    with direct_app.test_client() as client:
        again = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert first.status_code == 202
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content


@pytest.mark.parametrize("scope, path", [
    ({"path": "/api/v1/ingest/events"}, "/api/v1/ingest/events"),
    ({"path": "/prefix/api/v1/ingest/events", "root_path": "/prefix"}, "/api/v1/ingest/events"),
])
def test_the_request_path_is_flasks(scope, path):
    ctx = RequestContext(None, None, {"method": "POST", "headers": [], **scope})
    assert ctx.path == path


def test_repeated_headers_join_as_in_a_wsgi_environ():
    ctx = RequestContext(None, None, {"headers": [(b"x-a", b"1"), (b"idempotency-key", b"k"), (b"x-a", b"2")]})
    assert ctx.header("X-A") == "1,2" and ctx.header("Idempotency-Key") == "k" and ctx.header("X-B") is None


@pytest.mark.parametrize("result, expected, extra", [
    ({"ok": True}, (200, b'{\n  "ok": true\n}\n'), None),
    (({"ok": True}, 201, {"X-Thing": "1"}), (201, b'{\n  "ok": true\n}\n'), (b"x-thing", b"1")),
])
def test_results_render_as_connexion_writes_them(result, expected, extra):
    from handlers.runtime.direct import render

    status, headers, body = render(result)
    assert (status, body) == expected
    assert (b"content-type", b"application/json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
    assert extra is None or extra in headers


def test_a_batch_body_is_parsed_in_the_pool_not_on_the_event_loop(app, make_ingest_key, monkeypatch):
    import asyncio

    from handlers.runtime import validation

    parsed_on_loop = []
    parse_json = validation.parse_json

    def recording_parse(raw, encoding="utf-8"):
        try:
            asyncio.get_running_loop()
            parsed_on_loop.append(True)
        except RuntimeError:
            parsed_on_loop.append(False)
        return parse_json(raw, encoding)

    monkeypatch.setattr(validation, "parse_json", recording_parse)
    headers = make_ingest_key().headers
    with app.test_client() as client:
        accepted = client.post(EVENTS, json={"events": [event(1)]}, headers=headers)
        empty = client.post(EVENTS, json={"events": []}, headers=headers)
        snapshot = client.post(SNAPSHOTS, json={"snapshotType": "capacity", "actor": {"email": "s@acme.example"},
                                                "capturedAt": "2026-04-19T12:00:00Z", "metrics": {"u": 0.5}},
                               headers=headers)
    assert (accepted.status_code, empty.status_code, snapshot.status_code) == (202, 400, 202)
    assert empty.json()["error"]["code"] == "invalid_body"
    # The two batches in the pool; the snapshot (not a batch) by the validator, on the loop.
    assert parsed_on_loop == [False, False, True]
