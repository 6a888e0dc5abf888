"""A PostgreSQL outage in the middle of an ingest request, against a server process on a
throwaway cluster: honest 503s in each API's shape while it is down, one log line each
way, the interrupted request's key free again soon after the database is back, and its
batch stored exactly once."""
from __future__ import annotations

import concurrent.futures
import time

import httpx
import psycopg2
from sqlalchemy import make_url

from handlers.runtime.idempotency import LEASE_SECONDS
from models.db import Database
from tests.api.outage.conftest import seed
from tests.api.wepeople.helpers import EVENTS, event, new_key

ORIGIN = "https://shop.example"


def _dsn(url: str) -> str:
    parsed = make_url(url)
    return f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"


def _wait_for_lock_waiter(dsn: str, attempts: int = 200) -> None:
    watcher = psycopg2.connect(dsn)
    watcher.autocommit = True
    try:
        with watcher.cursor() as cursor:
            for _ in range(attempts):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    return
                time.sleep(0.05)
            cursor.execute("SELECT state, wait_event_type, left(query, 60) FROM pg_stat_activity")
            activity = cursor.fetchall()
    finally:
        watcher.close()
    raise AssertionError(f"the ingest request never waited on the locked table: {activity}")


def _assert_wepeople_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-Request-Id"]
    error = response.json()["error"]
    assert error["code"] == "internal_error" and error["requestId"] == response.headers["X-Request-Id"]
    assert error["docsUrl"].endswith("/docs/wepeople/errors/internal_error")


def _assert_alpinechat_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-Request-Id"]
    assert response.json() == {"error": "service_unavailable"}


def test_database_outage_mid_request(pg_cluster, server_on):
    database = Database(pg_cluster.url)
    made = seed(database, ORIGIN)
    database.dispose()
    server = server_on(pg_cluster.url)
    http = httpx.Client(base_url=server.base, timeout=30)
    key = new_key()
    batch = {"events": [event(i) for i in range(20)]}
    headers = {**made.headers, "Idempotency-Key": key}
    dsn = _dsn(pg_cluster.url)

    # The request claims its key, then waits inside its transaction on a table the test
    # holds locked; the database then goes away under it.
    locker = psycopg2.connect(dsn)
    with locker.cursor() as cursor:
        cursor.execute("LOCK TABLE ingest_events IN ACCESS EXCLUSIVE MODE")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        interrupted = pool.submit(http.post, EVENTS, json=batch, headers=headers)
        _wait_for_lock_waiter(dsn)
        pg_cluster.stop()
        _assert_wepeople_503(interrupted.result())
    locker.close()

    # While it is down: every API answers 503 in its own shape, with Retry-After.
    _assert_wepeople_503(http.post(EVENTS, json=batch, headers=headers))
    # A key verified a moment ago is trusted for AUTH_CACHE_SECONDS; another must be looked up.
    _assert_wepeople_503(http.get("/api/v1/ingest/ping", headers={"Authorization": "Bearer wp_live_" + "0" * 40}))
    _assert_alpinechat_503(http.get(f"/api/widget-config/{made.slug}"))
    # Cross-origin widget requests are looked up (CORS) before routing: same answer.
    _assert_alpinechat_503(http.get(f"/api/widget-config/{made.slug}", headers={"Origin": ORIGIN}))
    _assert_alpinechat_503(http.options(f"/api/widget-config/{made.slug}", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"}))
    health = http.get("/api/healthz")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert any(e.startswith("database") for e in health.json()["errors"])

    pg_cluster.start()
    # The interrupted request's claim was never released (the database was gone): its
    # lease, no longer renewed, frees the key. At most one 429 on the way, which says
    # how long: no longer than the lease.
    answers = []
    for _ in range(5):
        response = http.post(EVENTS, json=batch, headers=headers)
        answers.append(response.status_code)
        if response.status_code not in (429, 503):
            break
        assert int(response.headers["Retry-After"]) <= LEASE_SECONDS
        time.sleep(int(response.headers["Retry-After"]))
    assert answers[-1] == 202 and answers.count(429) <= 1, answers
    assert "Idempotent-Replayed" not in response.headers
    replayed = http.post(EVENTS, json=batch, headers=headers)
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == response.content
    assert http.get("/api/healthz").json()["status"] == "ok"

    with psycopg2.connect(dsn) as check, check.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_events WHERE organization_id = %s", (str(made.org_id),))
        assert cursor.fetchone()[0] == len(batch["events"])  # exactly once

    log = server.log()
    assert log.count("database is down") == 1, log
    assert log.count("database is back") == 1, log
    assert "Traceback" not in log, log
    http.close()


def test_a_statement_past_db_statement_timeout_is_503_and_frees_its_key(pg_cluster, server_on):
    """A database that answers but not in time (here: a lock held elsewhere)."""
    database = Database(pg_cluster.url)
    made = seed(database, ORIGIN)
    database.dispose()
    server = server_on(pg_cluster.url, DB_STATEMENT_TIMEOUT="1")
    headers = {**made.headers, "Idempotency-Key": new_key()}
    batch = {"events": [event(0)]}
    locker = psycopg2.connect(_dsn(pg_cluster.url))
    with httpx.Client(base_url=server.base, timeout=30) as http:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE ingest_events IN ACCESS EXCLUSIVE MODE")
        _assert_wepeople_503(http.post(EVENTS, json=batch, headers=headers))
        locker.rollback()
        # The database was there to release the claim: the retry runs at once.
        retried = http.post(EVENTS, json=batch, headers=headers)
        assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    locker.close()
    assert "Traceback" not in server.log()
