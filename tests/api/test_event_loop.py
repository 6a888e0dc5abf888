"""handlers/runtime/event_loop.py: an I/O-free operation (ping) is answered on the event
loop, without Flask, with the bytes and headers the Flask path gives."""
from __future__ import annotations

import pytest

from handlers.runtime.app import create_app
from handlers.runtime.pipeline import Pipeline

PING = "/api/v1/ingest/ping"
PER_REQUEST = {"x-request-id", "date"}


def _without_request_id(body: dict) -> dict:
    # Errors name their own request's id; everything else must be the same.
    if "error" in body:
        body = {**body, "error": {k: v for k, v in body["error"].items() if k != "requestId"}}
    return body


def _serve(app, headers: dict) -> tuple[list, list]:
    flask_requests: list[str] = []
    app.app.before_request(lambda: flask_requests.append("flask"))
    with app.test_client() as client:
        answers = [client.get(PING, headers=headers), client.get(PING),
                   client.get(PING, headers={"Authorization": "Bearer wp_live_unknown"})]
    return answers, flask_requests


def test_ping_is_answered_on_the_loop_as_flask_would(settings, database, make_ingest_key, monkeypatch):
    made = make_ingest_key()
    app = create_app(settings, database=database)
    runtime = app.app.extensions["runtime"]
    assert [p.operation.operation_id for p in runtime.pipelines.values() if p.on_event_loop] == ["ping"]
    on_loop, flask_seen = _serve(app, made.headers)

    monkeypatch.setattr(Pipeline, "on_event_loop", property(lambda self: False))
    through_flask, flask_seen_then = _serve(create_app(settings, database=database), made.headers)

    assert flask_seen == [] and flask_seen_then == ["flask"]  # only the 200 reaches a handler
    for loop, flask in zip(on_loop, through_flask, strict=True):
        assert loop.status_code == flask.status_code
        assert loop.content == flask.content or loop.status_code != 200
        assert _without_request_id(loop.json()) == _without_request_id(flask.json())
        assert ({k for k in loop.headers if k not in PER_REQUEST} == {k for k in flask.headers if k not in PER_REQUEST})
    assert [a.status_code for a in on_loop] == [200, 401, 401]
    assert on_loop[0].json()["app"]["slug"] == made.app_slug
    assert on_loop[0].headers["content-length"] == str(len(on_loop[0].content))


@pytest.mark.parametrize("result, expected, extra", [
    ({"ok": True}, (200, b'{\n  "ok": true\n}\n'), None),
    (({"ok": True}, 201, {"X-Thing": "1"}), (201, b'{\n  "ok": true\n}\n'), (b"x-thing", b"1")),
])
def test_results_render_as_flask_renders_them(app, result, expected, extra):
    from handlers.runtime.event_loop import EventLoopOperations
    from handlers.runtime.jsonifier import FastJsonifier

    renderer = EventLoopOperations(lambda *a: None, runtime=app.app.extensions["runtime"], jsonifier=FastJsonifier())
    status, headers, body = renderer.render(result)
    assert (status, body) == expected
    assert (b"content-length", str(len(body)).encode()) in headers
    assert extra is None or extra in headers
