"""Dependency outages: which failures mean "the database is unreachable", and one
state object per database (`Database.outage`) that logs when it goes down and comes back.

During an outage every request fails the same way; a traceback per request would bury
the one line an operator needs. Requests report failures here (`down`), successful
contact reports recovery (`up`): each transition is logged once, without a traceback.
The state is only for logging and health reports, never a decision shared by workers.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref

from sqlalchemy import exc as sa_exc

from models import metrics

log = logging.getLogger("outage")

# Seconds a client is told to wait (Retry-After) when a dependency is down: how soon
# retrying makes sense, since nobody knows when it comes back.
RETRY_AFTER_SECONDS = 5

# PostgreSQL SQLSTATEs that mean "no usable server" rather than a bad statement:
# connection exceptions (08...), too many connections, admin/crash shutdown, starting up,
# statement timeout (a server too slow to answer).
_PG_UNAVAILABLE = ("08", "53300", "57P01", "57P02", "57P03", "57014")
# SQLite: the file cannot be reached or stays locked past the busy timeout.
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "no such file")


_STATES: weakref.WeakSet[DependencyState] = weakref.WeakSet()


class DependencyState:
    """Up or down, as last observed in this process; logs each transition once."""

    def __init__(self, name: str):
        self.name = name
        self.is_down = False
        self.since = time.monotonic()
        self.reason = ""
        self._lock = threading.Lock()
        _STATES.add(self)
        self.publish()

    def publish(self) -> None:
        """Sets this process's `dependency_up` sample; a forked worker calls it again (its
        samples start from zero in a file of its own)."""
        metrics.DEPENDENCY_UP.labels(self.name).set(0 if self.is_down else 1)

    def down(self, reason: str) -> None:
        if self.is_down:
            return
        with self._lock:
            if self.is_down:
                return
            self.is_down, self.since, self.reason = True, time.monotonic(), reason
        metrics.DEPENDENCY_UP.labels(self.name).set(0)
        log.error("%s is down: %s (answering 503 until it is back)", self.name, reason)

    def up(self) -> None:
        if not self.is_down:
            return
        with self._lock:
            if not self.is_down:
                return
            self.is_down = False
            lasted, self.since = time.monotonic() - self.since, time.monotonic()
        metrics.DEPENDENCY_UP.labels(self.name).set(1)
        log.warning("%s is back after %.1f s", self.name, lasted)


def publish_all() -> None:
    """Republishes every live state: a forked worker's samples start from zero."""
    for state in list(_STATES):
        state.publish()


def database_outage(error: BaseException | None) -> str | None:
    """A one-line reason when `error` (or an exception it was raised from or during)
    says the database is unreachable or not answering; None for any other failure. The
    earliest such exception of the chain names it best (a failed rollback on a connection
    the server closed says less than the server's own message)."""
    reason, seen = None, 0
    while error is not None and seen < 10:
        reason = _outage_reason(error) or reason
        error = error.__cause__ or error.__context__
        seen += 1
    return reason


def _outage_reason(error: BaseException) -> str | None:
    if isinstance(error, sa_exc.TimeoutError):  # the pool gave no connection in time
        return f"no pooled connection in time ({_first_line(error)})"
    if isinstance(error, sa_exc.DisconnectionError):
        return _first_line(error)
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return _first_line(error.orig or error)
        return _driver_reason(error.orig)
    return _driver_reason(error)


def _driver_reason(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return f"SQLite: {_first_line(error)}" if any(s in text for s in _SQLITE_UNAVAILABLE) else None
    module = type(error).__module__ or ""
    if module.startswith("psycopg2") and isinstance(error, _psycopg2_operational()):
        code = getattr(error, "pgcode", None)
        # No SQLSTATE: the connection itself failed (refused, reset, closed, timed out).
        if code is None or code.startswith(_PG_UNAVAILABLE):
            return _first_line(error)
    return None


def _psycopg2_operational() -> type:
    import psycopg2

    return psycopg2.OperationalError


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()
