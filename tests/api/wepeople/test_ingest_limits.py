"""Monthly event quota per plan, and rate limits shared by server processes."""
from __future__ import annotations

import datetime as dt

import httpx
import limits
import pytest

from models.db import utcnow
from models.ingest.quota import current_month, remaining_quota, seconds_until_next_month
from models.ingest.tables import IngestUsage
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import EVENTS, PER_KEY, PLANS, SNAPSHOTS, event


def use_quota(database, org_id, events: int) -> None:
    with database.unit_of_work() as s:
        s.add(IngestUsage(organization_id=org_id, month=current_month(utcnow()), events=events))


def test_quota_accepts_what_fits_then_answers_429(client, make_ingest_key, database, peek):
    made = make_ingest_key(plan="starter")
    quota = PLANS["starter"]["monthlyEvents"]
    use_quota(database, made.org_id, quota - 2)
    partial = client.post(EVENTS, json={"events": [event(i) for i in range(4)]}, headers=made.headers)
    assert partial.status_code == 207, partial.text
    body = partial.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["results"]["rejected"]] == [
        (2, "quota_exceeded"), (3, "quota_exceeded")]
    assert peek.usage(made.org_id) == quota and peek.event_count(made.org_id) == 2

    for path, payload in ((EVENTS, {"events": [event(9)]}),
                          (SNAPSHOTS, {"snapshotType": "q.x", "actor": {"externalId": "w"}, "metrics": {}})):
        response = client.post(path, json=payload, headers=made.headers)
        assert_wepeople_error(response, 429, "quota_exceeded")
        now = dt.datetime.now(dt.UTC)
        retry = int(response.headers["Retry-After"])
        assert (now + dt.timedelta(seconds=retry)).month != now.month or retry < 2
        assert abs(retry - seconds_until_next_month(now)) <= 2
        assert "X-RateLimit-Limit" in response.headers and "X-RateLimit-Remaining" in response.headers
    assert peek.event_count(made.org_id) == 2


def test_unlimited_plan_counts_but_never_refuses(client, make_ingest_key, database, peek):
    made = make_ingest_key(plan="enterprise")
    assert PLANS["enterprise"]["monthlyEvents"] is None
    use_quota(database, made.org_id, 10**12)
    assert client.post(EVENTS, json={"events": [event(0)]}, headers=made.headers).status_code == 202
    assert peek.usage(made.org_id) == 10**12 + 1


def test_quota_is_per_month(make_ingest_key, database):
    made = make_ingest_key(plan="starter")
    quota = PLANS["starter"]["monthlyEvents"]
    with database.unit_of_work() as s:
        s.add(IngestUsage(organization_id=made.org_id, month="2000-01", events=quota))
    with database.unit_of_work() as s:
        assert remaining_quota(s, made.org_id, quota, utcnow()) == quota
        assert remaining_quota(s, made.org_id, quota, dt.datetime(2000, 1, 15, tzinfo=dt.UTC)) == 0


@pytest.mark.skipif(not __import__("os").environ.get("TEST_REDIS_URL"), reason="needs TEST_REDIS_URL")
def test_two_server_processes_share_one_rate_limit(start_server, make_ingest_key):
    budget = limits.parse(PER_KEY).amount
    bases = [start_server(), start_server()]
    made = make_ingest_key()
    statuses = []
    with httpx.Client(timeout=10) as one, httpx.Client(timeout=10) as two:
        for n in range(budget + 10):
            http, base = (one, bases[0]) if n % 2 else (two, bases[1])
            # Rejected events (the actor is missing) still spend the budget, and write nothing.
            response = http.post(base + EVENTS, json={"events": [event(n, actor={})]}, headers=made.headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
    # Each process alone would allow `budget`; together they allow it once.
    assert statuses.count(207) == budget
    assert statuses[-1] == 429
    assert_wepeople_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Remaining"] == "0"
