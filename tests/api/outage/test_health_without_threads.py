"""The health probe needs no request thread: with the server's only WSGI thread stuck on
the database, /api/healthz still answers."""
from __future__ import annotations

import concurrent.futures
import sqlite3
import time

import httpx

from models import migrate
from models.db import Database
from tests.api.outage.conftest import seed
from tests.api.wepeople.helpers import EVENTS, event


def test_healthz_answers_while_every_request_thread_is_stuck(tmp_path, server_on):
    path = tmp_path / "app.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    database = Database(url)
    made = seed(database, "https://shop.example")
    database.dispose()
    server = server_on(url, WSGI_THREADS="1")
    holder = sqlite3.connect(path, isolation_level=None)
    with httpx.Client(base_url=server.base, timeout=30) as http, concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder.execute("BEGIN IMMEDIATE")  # the write lock: the batch waits for it in the only thread
        stuck = pool.submit(http.post, EVENTS, json={"events": [event(0)]}, headers=made.headers)
        time.sleep(0.5)
        health = http.get("/api/healthz")
        still_stuck = not stuck.done()
        holder.execute("ROLLBACK")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert still_stuck, "the batch was meant to hold the only thread while healthz answered"
        assert stuck.result().status_code == 202
    holder.close()
