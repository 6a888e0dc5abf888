"""Dependency checks behind the health probe, answered within a deadline whatever the
dependencies do.

Each check runs in a small pool of its own (never the requests' threads or connection
pool) and at most one check per dependency is in flight: while the database does not
answer, probes arriving meanwhile wait for the same check up to the deadline instead
of piling up threads and connections behind it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable

from models import outage
from models.db import Database, utcnow

# Under a load balancer's usual 1-2 s probe timeout.
DEADLINE_SECONDS = 0.5


class HealthProbe:
    def __init__(self, deadline: float = DEADLINE_SECONDS):
        self.deadline = deadline
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")
        self._inflight: dict[tuple[str, int], concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    def _start(self, name: str, target: object, check: Callable[[], object]) -> concurrent.futures.Future:
        with self._lock:
            key = (name, id(target))
            future = self._inflight.get(key)
            if future is None or future.done():
                future = self._inflight[key] = self._pool.submit(check)
            return future

    def _checks(self, database: Database, redis) -> dict[str, concurrent.futures.Future]:
        checks = {"database": self._start("database", database, lambda: _ping_database(database))}
        if redis is not None:
            checks["redis"] = self._start("redis", redis, redis.ping)
        return checks

    def report(self, database: Database, redis=None) -> dict:
        checks = self._checks(database, redis)
        concurrent.futures.wait(checks.values(), timeout=self.deadline)
        return self._report(checks)

    async def report_async(self, database: Database, redis=None) -> dict:
        """The same, awaited on the event loop (no request thread is held)."""
        checks = self._checks(database, redis)
        waiting = [asyncio.wrap_future(f) for f in checks.values()]
        for future in waiting:  # the outcome is read from `checks`; these only wake us
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.wait(waiting, timeout=self.deadline)
        return self._report(checks)

    def _report(self, checks: dict[str, concurrent.futures.Future]) -> dict:
        """`ok` when every configured dependency answered; otherwise `degraded`, naming each one down."""
        errors: list[str] = []
        for name, future in checks.items():
            if not future.done():
                errors.append(f"{name}: no answer within {self.deadline:g} s")
            elif future.exception() is not None:
                errors.append(f"{name}: {type(future.exception()).__name__}")
        return {"status": "degraded" if errors else "ok", "errors": errors, "ts": utcnow().isoformat()}


def _ping_database(database: Database) -> None:
    try:
        database.ping()
    except Exception as error:
        reason = outage.database_outage(error)
        if reason:
            database.outage.down(reason)
        raise
    database.outage.up()


PROBE = HealthProbe()
