"""When each API key was last used, recorded at most once a minute per key, off the request path.

A request only notes its key in this process's buffer (one dict write; nothing at all if the
key was recorded less than a minute ago). A daemon thread writes the buffer every
`interval` seconds with one conditional UPDATE per key:

    UPDATE ... SET last_used_at = :seen WHERE id = :id AND (last_used_at IS NULL OR last_used_at <= :seen - 1 min)

so each key's row changes at most once per minute of use however many workers and hosts
note it (the condition is checked by the database, the one shared truth), and a busy key
costs one small write a minute instead of one per request. The price: `last_used_at` may
lag real use by up to `interval` seconds (plus the minute), and a process killed hard
loses its unwritten minute; a clean shutdown (the ASGI lifespan's end) writes it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import uuid
from collections.abc import Callable

import anyio
from sqlalchemy import or_, update

from models.alpinechat import ChatApiKey
from models.db import Database, utcnow
from models.wepeople import IngestApiKey

log = logging.getLogger(__name__)

RESOLUTION = dt.timedelta(minutes=1)
TABLES = {"wepeople": IngestApiKey, "alpinechat": ChatApiKey}


class KeyUsage:
    def __init__(self, database: Database, interval: float = 60.0, clock: Callable[[], dt.datetime] = utcnow):
        self.database = database
        self.interval = interval
        self.clock = clock
        self._pending: dict[tuple[str, str], dt.datetime] = {}
        # What this process last wrote per key: uses within a minute of it need no note.
        self._recorded: dict[tuple[str, str], dt.datetime] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def note(self, api: str, key_id: str) -> None:
        """Called on every authenticated request: cheap, never touches the database."""
        now = self.clock()
        key = (api, key_id)
        recorded = self._recorded.get(key)
        if recorded is not None and now - recorded < RESOLUTION:
            return
        with self._lock:  # held elsewhere only to swap the buffer
            self._pending[key] = now
        if self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked worker inherits the dict but not the parent's thread.
            self._pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="key-usage", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> int:
        """Writes the noted uses; returns how many rows changed. Failures (database down) keep
        the uses for the next round."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            written = {}
            try:
                with self.database.engine.begin() as connection:
                    for (api, key_id), seen in pending.items():
                        table = TABLES[api]
                        result = connection.execute(
                            update(table)
                            .where(table.id == uuid.UUID(key_id),
                                   or_(table.last_used_at.is_(None), table.last_used_at <= seen - RESOLUTION))
                            .values(last_used_at=seen)
                        )
                        if result.rowcount:
                            written[(api, key_id)] = seen
            except Exception:
                log.warning("could not record key use; retrying in %ss", self.interval, exc_info=True)
                with self._lock:
                    for key, seen in pending.items():
                        if key not in self._pending or self._pending[key] < seen:
                            self._pending[key] = seen
                return 0
            horizon = self.clock() - RESOLUTION
            self._recorded = {k: v for k, v in self._recorded.items() if v > horizon}
            # Only what this process wrote: a use another process had recorded is tried again
            # by the next flush (one UPDATE that changes nothing until that minute is over).
            self._recorded.update(written)
            return len(written)

    @contextlib.asynccontextmanager
    async def flushed_at_shutdown(self, _app):
        """An ASGI lifespan: what is noted but not yet written is written when the worker stops
        (uvicorn ends a worker by re-raising SIGTERM, so atexit handlers never run)."""
        yield
        await anyio.to_thread.run_sync(self.flush)
