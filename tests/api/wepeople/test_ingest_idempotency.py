"""Idempotency-Key on both POSTs: replay, conflicts, concurrency and the window."""
from __future__ import annotations

import concurrent.futures
import datetime as dt

import httpx
from sqlalchemy import update

from models import ingest_idempotency
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import EVENTS, REPLAY_SECONDS, SNAPSHOTS, event, new_key


def test_replay_is_byte_identical_and_marked(client, make_ingest_key, peek):
    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(0), event(1, category="bad")]}
    first = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert first.status_code == 207 and "Idempotent-Replayed" not in first.headers
    again = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert again.status_code == 207
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert "X-RateLimit-Remaining" in again.headers
    assert len(peek.events(made.org_id)) == 1
    # Key order and whitespace are not part of the canonical request.
    reordered = '{"events":[' + ",".join(
        __import__("json").dumps(dict(reversed(list(e.items())))) for e in body["events"]) + "]}"
    third = client.post(EVENTS, content=reordered,
                        headers={**made.headers, "Idempotency-Key": key, "Content-Type": "application/json"})
    assert third.content == first.content and third.headers["Idempotent-Replayed"] == "true"


def test_snapshot_replay(client, make_ingest_key, peek):
    made = make_ingest_key()
    key = new_key()
    body = {"snapshotType": "queue", "actor": {"externalId": "w"}, "metrics": {"depth": 4}}
    first = client.post(SNAPSHOTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    again = client.post(SNAPSHOTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert len(peek.events(made.org_id)) == 1


def test_same_key_different_body_is_refused(client, make_ingest_key, peek):
    made = make_ingest_key()
    key = new_key()
    assert client.post(EVENTS, json={"events": [event(0)]},
                       headers={**made.headers, "Idempotency-Key": key}).status_code == 202
    other = client.post(EVENTS, json={"events": [event(1)]}, headers={**made.headers, "Idempotency-Key": key})
    error = assert_wepeople_error(other, 400, "invalid_body")
    assert "Idempotency-Key" in error["message"] and "different" in error["message"]
    # Another endpoint with the same key is a different request too.
    snap = client.post(SNAPSHOTS, json={"snapshotType": "q.x", "actor": {"externalId": "w"}, "metrics": {}},
                       headers={**made.headers, "Idempotency-Key": key})
    assert_wepeople_error(snap, 400, "invalid_body")
    assert len(peek.events(made.org_id)) == 1


def test_keys_are_scoped_per_api_key(client, make_ingest_key, peek):
    one, two = make_ingest_key(), make_ingest_key()
    key = new_key()
    body = {"events": [event(0)]}
    assert client.post(EVENTS, json=body, headers={**one.headers, "Idempotency-Key": key}).status_code == 202
    response = client.post(EVENTS, json=body, headers={**two.headers, "Idempotency-Key": key})
    assert response.status_code == 202 and "Idempotent-Replayed" not in response.headers
    assert len(peek.events(two.org_id)) == 1


def test_key_is_free_again_after_the_window(client, make_ingest_key, peek, database):
    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(0)]}
    first = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    with database.unit_of_work() as s:
        record = ingest_idempotency.find(s, str(made.key_id), key)
        assert record.expires_at - record.created_at == dt.timedelta(seconds=REPLAY_SECONDS)
        # Travel past the window.
        s.execute(update(ingest_idempotency.IdempotencyRecord)
                  .where(ingest_idempotency.IdempotencyRecord.id == record.id)
                  .values(created_at=record.created_at - dt.timedelta(seconds=REPLAY_SECONDS + 1),
                          expires_at=record.created_at - dt.timedelta(seconds=1)))
    later = client.post(EVENTS, json={"events": [event(5)]}, headers={**made.headers, "Idempotency-Key": key})
    assert later.status_code == 202 and "Idempotent-Replayed" not in later.headers
    assert later.json()["requestId"] != first.json()["requestId"]
    assert len(peek.events(made.org_id)) == 2


def test_failed_request_releases_the_key(client, make_ingest_key, peek, monkeypatch):
    from models.ingest import service

    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(0)]}
    real = service.write_events
    monkeypatch.setattr(service, "write_events", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    assert client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key}).status_code == 500
    monkeypatch.setattr(service, "write_events", real)
    retry = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert retry.status_code == 202 and "Idempotent-Replayed" not in retry.headers
    assert len(peek.events(made.org_id)) == 1


def test_key_longer_than_200_characters_is_invalid(client, make_ingest_key):
    made = make_ingest_key()
    response = client.post(EVENTS, json={"events": [event(0)]}, headers={**made.headers, "Idempotency-Key": "k" * 201})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert "Idempotency-Key" in error["message"]
    ok = client.post(EVENTS, json={"events": [event(0)]}, headers={**made.headers, "Idempotency-Key": "k" * 200})
    assert ok.status_code == 202


def test_concurrent_identical_requests_store_one_batch(start_server, make_ingest_key, peek):
    """Many clients retry the same batch at once against two server processes:
    exactly one is processed, every other gets its replay."""
    bases = [start_server(), start_server()]
    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(i) for i in range(50)]}
    clients = 12

    def send(n):
        with httpx.Client(base_url=bases[n % 2], timeout=60) as http:
            return http.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(send, range(clients)))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses if r.status_code != 202]
    fresh = [r for r in responses if "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1
    assert {r.content for r in responses} == {fresh[0].content}
    assert peek.event_count(made.org_id) == 50
    assert peek.usage(made.org_id) == 50
