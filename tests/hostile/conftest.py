"""A live gunicorn (uvicorn workers, as in production) with small edge deadlines, and the
keys the hostile cases use."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types

import pytest

from models.config import ROOT
from models import alpinechat, wepeople
from tests.conftest import unique
from scripts.ports import free_port

# Small, so that slow clients are cut in seconds; the cases assert against these.
EDGE_ENV = {"HEADER_TIMEOUT": "1.5", "BODY_IDLE_TIMEOUT": "1", "BODY_TIMEOUT": "3",
            "MAX_HEADER_BYTES": "32768", "MAX_HEADER_COUNT": "100"}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /api/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@pytest.fixture(scope="module")
def hostile_server(settings):
    port = free_port()
    env = dict(os.environ, DATABASE_URL=settings.database_url, BIND=f"127.0.0.1:{port}",
               WEB_CONCURRENCY="2", LOG_LEVEL="warning", **EDGE_ENV)
    env.pop("REDIS_URL", None)
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    log = open(os.devnull, "wb") if not os.environ.get("HOSTILE_SERVER_LOG") else open(
        os.environ["HOSTILE_SERVER_LOG"], "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
         "handlers.runtime.asgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not _answers(port):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("gunicorn did not answer within 30 s")
        time.sleep(0.2)
    yield port
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def hostile_keys(database):
    """Placeholders the cases' raw bytes use, with real values."""
    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, unique("org"), plan="growth")
        app = wepeople.create_app(s, org, unique("app"), "Hostile App", None)
        _, wp_key = wepeople.create_ingest_key(s, app)
        tenant = alpinechat.create_tenant(s, unique("tenant"), "admin@example.com")
        bot = alpinechat.create_chatbot(s, tenant, unique("bot"), "Hostile Bot",
                                        allowed_origins=["https://site.example"])
        _, ac_key = alpinechat.create_chat_key(s, tenant, ["*"])
        other = alpinechat.create_tenant(s, unique("tenant"), "other@example.com")
        other_bot = alpinechat.create_chatbot(s, other, unique("bot"), "Other Bot")
        return types.SimpleNamespace(values={
            b"{WP}": wp_key.encode(), b"{AC}": ac_key.encode(), b"{SLUG}": bot.slug.encode(),
            b"{OTHER}": other_bot.slug.encode(),
        })
