"""Hostile raw requests against a live gunicorn (uvicorn workers, as in production).

Every case of tests/hostile/cases.py is sent over its own socket (all at once, a few at a
time), then each is checked: no 5xx, no hang (answered or closed within the bound), every
status one the case allows, every error in the owning API's documented shape with no
stack trace or file path, an X-Request-Id on every answer the app writes, nosniff and no
server banner; slow clients are cut within the server's (small, test-set) deadlines."""
from __future__ import annotations

import concurrent.futures
import json
import re

import pytest

from tests.hostile.cases import CASES, CLOSED, Case
from tests.hostile.raw_http import Exchange, Response, exchange

BOUND = 20.0  # seconds: a case still open after this is a hang
LEAKS = re.compile(rb"Traceback|File \"|site-packages|\.py\b|/work/|/home/|/usr/lib")


def _fill(raw: bytes, keys) -> bytes:
    for placeholder, value in keys.values.items():
        raw = raw.replace(placeholder, value)
    return raw


@pytest.fixture(scope="module")
def results(hostile_server, hostile_keys) -> dict[int, Exchange]:
    def run(index_case):
        index, case = index_case
        return index, exchange(hostile_server, _fill(case.raw, hostile_keys), expect=case.responses, bound=BOUND,
                               byte_delay=case.byte_delay, slow_after=case.slow_after,
                               half_close=case.half_close, head_only=case.head_only)

    # Slow cases first, so that their seconds overlap with everything else.
    ordered = sorted(enumerate(CASES), key=lambda item: not (item[1].cut_within or item[1].byte_delay))
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        return dict(pool.map(run, ordered))


def test_the_table_is_broad():
    classes = {case.cls for case in CASES}
    assert len(CASES) >= 150 and len(classes) >= 60
    assert {case.api for case in CASES} == {"wepeople", "alpinechat"}
    for prefix in ("framing", "header", "encoding", "json", "number", "nesting", "path", "slug", "id", "size", "slow"):
        assert any(name.startswith(prefix) for name in classes), prefix


def _check_error_shape(case: Case, response: Response) -> None:
    body = json.loads(response.body)
    request_id = response.header("x-request-id")
    if case.api == "wepeople":
        error = body["error"]
        assert set(error) == {"code", "message", "requestId", "docsUrl"}, body
        assert error["requestId"] == request_id
        assert error["docsUrl"].endswith("/docs/wepeople/errors/" + error["code"])
        return
    if response.status == 422:
        assert set(body) == {"message", "errors"}, body
        assert all(isinstance(messages, list) and all(isinstance(m, str) for m in messages)
                   for messages in body["errors"].values()), body
    else:
        assert set(body) == {"error"} and isinstance(body["error"], str), body


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{i:03d}-{case.cls}" for i, case in enumerate(CASES)])
def test_hostile_case(results, index):
    case = CASES[index]
    outcome = results[index]
    statuses = [response.status for response in outcome.responses]
    assert outcome.elapsed < BOUND - 1, f"hung: no answer and no close in {BOUND:g} s"
    assert all(status < 500 for status in statuses), statuses
    if not outcome.responses:
        assert CLOSED in case.expect, f"closed without an answer (leftover {outcome.leftover[:200]!r})"
    else:
        assert set(statuses) <= case.expect, (statuses, sorted(case.expect))
        if CLOSED not in case.expect:
            assert len(outcome.responses) >= case.responses, statuses
    if case.cut_within is not None:
        assert outcome.elapsed <= case.cut_within, f"a slow client held the connection {outcome.elapsed:.1f} s"
    for response in outcome.responses:
        assert response.header("x-request-id"), response.headers
        assert response.header("x-content-type-options") == "nosniff"
        assert response.header("server") is None
        assert not LEAKS.search(response.body), response.body[:500]
        if response.status >= 400 and not case.head_only:
            _check_error_shape(case, response)


def test_server_still_answers_after_the_suite(results, hostile_server):
    answer = exchange(hostile_server, b"GET /api/healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [r.status for r in answer.responses] == [200]
