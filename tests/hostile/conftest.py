"""A live gunicorn (uvicorn workers, as in production) with small edge deadlines, and the
keys the hostile cases use."""
from __future__ import annotations

import os
import socket
import types

import pytest

from models import alpinechat, wepeople
from tests.conftest import unique
from tests.servers import start_gunicorn, stop_gunicorn

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
    log = open(os.devnull, "wb") if not os.environ.get("HOSTILE_SERVER_LOG") else open(
        os.environ["HOSTILE_SERVER_LOG"], "wb")
    process, port = start_gunicorn(settings, _answers, log=log, WEB_CONCURRENCY="2", **EDGE_ENV)
    yield port
    stop_gunicorn(process)
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
            b"{OTHER}": other_bot.slug.encode(), b"{NONE}": unique("no-such-bot").encode(),
        })
