"""A worker's graceful stop, as the chat streams see it.

gunicorn stops a worker with SIGTERM and kills it `graceful_timeout` seconds later
(also on a reload). The uvicorn worker (uvicorn-worker 0.4, uvicorn 0.5x) then closes
its listening sockets, lets in-flight requests finish and waits for every connection to
close, with no deadline of its own (it passes uvicorn no `timeout_graceful_shutdown`);
the ASGI lifespan `shutdown` comes only after that. A chat answer longer than the
graceful timeout would be cut by the SIGKILL: no `error`, `finish`, `done`, no stored
answer, and its worst-case reservation left in the month's budget.

So each worker puts its own handler in front of uvicorn's SIGTERM/SIGINT handler (at
lifespan start-up, when uvicorn's is in place; uvicorn's still runs, so the server stops
as before) and, `graceful_timeout - margin` seconds after the signal, asks every chat
stream still open to end: it sends the localized `shutting_down` error, `usage`,
`finish: error` and `done`, and stores its partial answer and real cost before the kill.
Streams that end sooner are not touched. gunicorn's `post_worker_init` hook
(handlers/runtime/gunicorn_conf.py) hands the real graceful timeout over; without
gunicorn it is `GRACEFUL_TIMEOUT` (30 s). The margin is `CHAT_SHUTDOWN_MARGIN_SECONDS` (5 s).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger("shutdown")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    """One per process: when the worker was told to stop, and the streams to end."""

    def __init__(self):
        self.graceful_timeout: float | None = None  # gunicorn's, once its worker says so
        self.stopping_since: float | None = None  # time.monotonic() of the signal
        self.draining = False  # the streams' deadline has passed
        self._streams: set[Callable[[], None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fallback_timeout = 30.0
        self._margin = 5.0

    # ── set-up ────────────────────────────────────────────────────────────────
    def install(self, *, graceful_timeout: float, margin: float) -> bool:
        """Chains the handler in front of the server's SIGTERM/SIGINT handlers; call on
        the serving loop. Only where a server installed handlers (uvicorn does, from the
        main thread), so nothing changes for embedded or test use."""
        self._fallback_timeout, self._margin = graceful_timeout, margin
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        installed = False
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            if not callable(previous) or getattr(previous, "_drain", None) is self:
                continue

            def handler(sig, frame, previous=previous):
                self.begin()
                previous(sig, frame)

            handler._drain = self
            signal.signal(signum, handler)
            installed = True
        return installed

    # ── the stop ──────────────────────────────────────────────────────────────
    def begin(self) -> None:
        """The worker was told to stop: schedules the end of the open streams. Safe to
        call from a signal handler (the work happens on the loop)."""
        if self.stopping_since is not None or self._loop is None:
            return
        self.stopping_since = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:  # the loop is closed already
            pass

    def _schedule(self) -> None:
        timeout = self.graceful_timeout if self.graceful_timeout is not None else self._fallback_timeout
        delay = max(0.0, timeout - self._margin - (time.monotonic() - self.stopping_since))
        log.info("stopping: chat streams still open in %.1fs end then (graceful timeout %.0fs, margin %.1fs)",
                 delay, timeout, self._margin)
        self._handle = self._loop.call_later(delay, self.drain)

    def drain(self) -> None:
        """Ends every open stream now (and any that opens from here on)."""
        self.draining = True
        streams = list(self._streams)
        if streams:
            log.warning("ending %d open chat stream(s) before the graceful timeout", len(streams))
        for end in streams:
            try:
                end()
            except Exception:  # one stream's failure must not keep the others open
                log.exception("could not end a chat stream")

    def watch(self, end: Callable[[], None]) -> Callable[[], None]:
        """Registers a stream's `end` (called on the loop); returns its unregistration."""
        if self.draining:
            asyncio.get_running_loop().call_soon(end)
        self._streams.add(end)
        return lambda: self._streams.discard(end)


DRAIN = Drain()


def configure_from_gunicorn(worker) -> None:
    """gunicorn's `post_worker_init` hook: the worker's real graceful timeout. A stopping
    uvicorn worker stops its heartbeat, so on a reload (the master keeps running) it is
    killed after the worker `timeout` if that comes first."""
    limits = [float(worker.cfg.graceful_timeout)]
    if worker.cfg.timeout:
        limits.append(float(worker.cfg.timeout))
    DRAIN.graceful_timeout = min(limits)
