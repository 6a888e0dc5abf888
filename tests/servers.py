"""gunicorn as in production (the uvicorn worker, handlers/runtime/gunicorn_conf.py) on a
free port over the test run's database, for the tests that need a real server."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from models.config import ROOT
from scripts.ports import free_port


def gunicorn_env(settings, port: int, **env: str) -> dict[str, str]:
    """The environment of a gunicorn on `port`: the test run's database and Redis (none
    when the run has none), and `env` over it."""
    out = dict(os.environ, DATABASE_URL=settings.database_url, BIND=f"127.0.0.1:{port}", LOG_LEVEL="warning")
    out.pop("REDIS_URL", None)
    if settings.redis_url:
        out["REDIS_URL"] = settings.redis_url
    out.update(env)
    return out


def start_gunicorn(settings, ready: Callable[[int], bool], *, timeout: float = 30,
                   log: IO[bytes] | None = None, **env: str) -> tuple[subprocess.Popen, int]:
    """(the process, its port) once `ready(port)` says it answers; its stderr goes to `log`
    (kept in memory otherwise, for the error raised when it does not come up)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
         "handlers.runtime.asgi:app"],
        cwd=ROOT, env=gunicorn_env(settings, port, **env), stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    # The master listens before its workers can answer: wait for a real response.
    while not ready(port):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}: "
                               + ("" if log else process.stderr.read().decode()[-4000:]))
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s")
        time.sleep(0.2)
    return process, port


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)
