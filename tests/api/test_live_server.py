"""The production configuration for real: gunicorn with the uvicorn worker, over TCP."""
from __future__ import annotations

import http.client
import json

import pytest

from tests.servers import start_gunicorn, stop_gunicorn


@pytest.fixture(scope="module")
def live_server(settings):
    def ready(port: int) -> bool:
        try:
            _request(port, "GET", "/api/healthz")
            return True
        except OSError:
            return False

    process, port = start_gunicorn(settings, ready, WEB_CONCURRENCY="2")
    yield port
    stop_gunicorn(process)


def _request(port, method, path, body=None, headers=None, chunked=False):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response, payload


def test_health_over_gunicorn(live_server):
    response, payload = _request(live_server, "GET", "/api/healthz")
    assert response.status == 200
    assert json.loads(payload)["status"] == "ok"


def test_chunked_request_body_is_read(live_server, make_ingest_key):
    """Transfer-Encoding: chunked (no Content-Length) reaches validation under uvicorn."""
    made = make_ingest_key()
    chunks = iter([b'{"snapshotType": "x",', b' "metrics": {}}'])
    response, payload = _request(live_server, "POST", "/api/v1/ingest/snapshots", body=chunks,
                                 headers={**made.headers, "Content-Type": "application/json"}, chunked=True)
    assert response.status == 400
    error = json.loads(payload)["error"]
    assert error["code"] == "invalid_body" and "actor" in error["message"]
    assert error["requestId"] == response.getheader("X-Request-Id")


def test_oversized_declared_body_refused_unread(live_server, make_ingest_key):
    made = make_ingest_key()
    connection = http.client.HTTPConnection("127.0.0.1", live_server, timeout=10)
    connection.putrequest("POST", "/api/v1/ingest/events")
    for name, value in {**made.headers, "Content-Type": "application/json",
                        "Content-Length": str(50 * 1024 * 1024)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(b'{"events": [')  # far less than declared: the answer must not wait for the rest
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "batch_too_large"
    connection.close()


def test_one_date_header_on_every_kind_of_response(live_server, make_ingest_key, make_chatbot):
    """uvicorn writes Date; werkzeug's conditional answers (ETag, files) wrote a second one."""
    made, bot = make_ingest_key(), make_chatbot()
    requests = [
        ("GET", "/api/v1/ingest/ping", made.headers),                 # Flask handler, 200
        ("GET", f"/api/widget-config/{bot.slug}", {}),                # ETag (make_conditional)
        ("GET", "/docs/static/docs.js", {}),                          # a file (send_file)
        ("GET", "/docs/wepeople/", {}),                               # a page
        ("GET", "/api/v1/ingest/ping", {}),                           # an error from the middleware stack
        ("DELETE", "/api/v1/ingest/ping", {}),                        # 405
        ("GET", "/api/no/such/route", {}),                            # 404
    ]
    for method, path, headers in requests:
        response, _ = _request(live_server, method, path, headers=headers)
        dates = [value for name, value in response.getheaders() if name.lower() == "date"]
        assert len(dates) == 1, (method, path, dates)
