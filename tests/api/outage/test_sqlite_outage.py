"""SQLite's real outage: another process holds the database's write lock past the busy
timeout (a long admin job, a backup). Writes answer 503 with Retry-After in the API's
shape, logged once; when the lock goes, the same request goes through and that is logged
once too."""
from __future__ import annotations

import logging
import sqlite3

import pytest

from models import migrate, outage
from models.config import Settings
from models.db import Database
from tests.api.outage.conftest import seed
from tests.api.wepeople.helpers import EVENTS, event, new_key


@pytest.fixture
def sqlite_app(tmp_path):
    from handlers.runtime.app import create_app

    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    database = Database(url, busy_timeout=0.3)
    app = create_app(Settings.from_env({}, database_url=url, public_base_url="http://testserver"),
                     database=database)
    yield app, database, tmp_path / "app.db"
    database.dispose()


def test_a_locked_database_is_503_then_recovers(sqlite_app, caplog):
    app, database, path = sqlite_app
    made = seed(database, "https://shop.example")
    headers = {**made.headers, "Idempotency-Key": new_key()}
    batch = {"events": [event(0), event(1)]}
    holder = sqlite3.connect(path, isolation_level=None)
    caplog.set_level(logging.INFO)
    with app.test_client() as client:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held
        for _ in range(3):
            response = client.post(EVENTS, json=batch, headers=headers)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
            assert response.headers["Content-Type"] == "application/json"
            error = response.json()["error"]
            assert error["code"] == "internal_error" and error["requestId"] == response.headers["X-Request-Id"]
        # Reads go on (WAL): the widget is still configured.
        assert client.get(f"/api/widget-config/{made.slug}").status_code == 200
        holder.execute("ROLLBACK")
        retried = client.post(EVENTS, json=batch, headers=headers)
        assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
        assert retried.json()["accepted"] == 2
    holder.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "outage"]
    assert len(messages) == 2, messages  # one line each way, not one per request
    assert messages[0].startswith("database is down: SQLite") and "locked" in messages[0]
    assert messages[1].startswith("database is back")
    assert not [r for r in caplog.records if r.exc_info], "no traceback during an outage"
