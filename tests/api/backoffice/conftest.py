"""Back office fixtures: a real SMTP server (aiosmtpd), a real HTTP webhook receiver that
verifies Standard Webhooks signatures and deduplicates on webhook-id, chatbots wired to
both, and conversations to rate and read."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import types
import uuid
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook, WebhookVerificationError

from models import alpinechat, conversations, outbox
from models.db import utcnow
from scripts.ports import free_port

# ── SMTP ─────────────────────────────────────────────────────────────────────


class _Inbox:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        self.messages.append(types.SimpleNamespace(rcpt=list(envelope.rcpt_tos), mail_from=envelope.mail_from,
                                                   subject=message["Subject"], message_id=message["Message-ID"],
                                                   body=message.get_payload(decode=True).decode()))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a fixed port that can be taken down and brought back."""

    def __init__(self):
        self.port = free_port()
        self.inbox = _Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list:
        return [m for m in self.inbox.messages if address in m.rcpt]


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# ── Webhook receiver ─────────────────────────────────────────────────────────


@dataclasses.dataclass
class Receiver:
    """Accepts only correctly signed deliveries, and acts once per webhook-id."""

    port: int
    secret: str | None = None
    fail_next: int = 0  # answer this many (valid) requests with 503 first
    lose_acks: int = 0  # act on this many, then answer 503 as if the ack got lost
    requests: list = dataclasses.field(default_factory=list)
    effects: dict = dataclasses.field(default_factory=dict)  # webhook-id -> payload
    rejected: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alpinechat"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append(headers)
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    receiver.rejected += 1
                    self._answer(401)
                    return
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self._answer(503)
                    return
                receiver.effects.setdefault(headers["webhook-id"], payload)
                if receiver.lose_acks > 0:
                    receiver.lose_acks -= 1
                    self._answer(503)
                    return
                self._answer(204)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver():
    r = Receiver(port=free_port())
    r.start()
    yield r
    r.stop()


# ── Worker settings and running ─────────────────────────────────────────────


@pytest.fixture
def worker_settings(settings, smtp_server):
    """What `scripts/worker` would read: SMTP on the test server, loopback webhooks allowed."""
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                               mail_from="alpinechat@example.org", webhook_allow_private=True)


FAST_RETRIES = outbox.RetryPolicy(max_attempts=4, base_seconds=60, cap_seconds=3600)


@pytest.fixture
def run_worker(database, worker_settings):
    """Runs the worker once, as of `later` from now (retries become due by moving time)."""

    def run(later: dt.timedelta = dt.timedelta(0), settings=None, policy=FAST_RETRIES) -> int:
        return outbox.run_once(database, settings or worker_settings, worker="test-worker",
                               now=utcnow() + later, policy=policy)

    return run


# ── Chatbots and conversations ───────────────────────────────────────────────


@pytest.fixture
def make_bot(make_chatbot, database):
    """A chatbot with lead capture on, its own admin address, and optionally a webhook."""

    def make(webhook_url=None, language="de", lead_capture=True, allowed_origins=(), scopes=("*",)):
        bot = make_chatbot(scopes=scopes, language=language, allowed_origins=allowed_origins,
                           widget_config={"widget": {"lead_capture": lead_capture}})
        bot.admin_email = f"admin-{uuid.uuid4().hex[:8]}@tenant.example"
        with database.unit_of_work() as s:
            chatbot = alpinechat.get_chatbot(s, bot.slug)
            chatbot.tenant.admin_email = bot.admin_email
            if webhook_url:
                chatbot.webhook_url = webhook_url
                bot.webhook_secret = alpinechat.ensure_webhook_secret(chatbot)
        return bot

    return make


@pytest.fixture
def make_conversation(database):
    """A conversation of the chatbot with alternating user/assistant messages."""

    def make(chatbot_id, turns=("Hallo", "Servus!"), session_id=None):
        with database.unit_of_work() as s:
            conversation = conversations.get_or_create_conversation(
                s, chatbot_id, session_id or f"sess-{uuid.uuid4().hex[:12]}", language="de")
            ids = []
            for i, text in enumerate(turns):
                message = conversations.add_message(s, conversation, "user" if i % 2 == 0 else "assistant", text)
                ids.append(message.id)
            return types.SimpleNamespace(id=conversation.id, session_id=conversation.session_id, message_ids=ids)

    return make


@pytest.fixture
def deliveries(database):
    """The chatbot's outbox rows with their attempt logs, as plain values."""
    return lambda chatbot_id: deliveries_of(database, chatbot_id)


def deliveries_of(database, chatbot_id) -> list:
    from sqlalchemy import select

    with database.unit_of_work() as s:
        rows = s.scalars(select(outbox.Delivery).where(outbox.Delivery.chatbot_id == chatbot_id)
                         .order_by(outbox.Delivery.channel)).all()
        return [types.SimpleNamespace(
            id=d.id, channel=d.channel, event_type=d.event_type, target=d.target, status=d.status,
            attempts=d.attempts, payload=json.loads(json.dumps(d.payload)), webhook_id=d.webhook_id,
            last_error=d.last_error,
            log=[types.SimpleNamespace(number=a.number, ok=a.ok, status_code=a.status_code, error=a.error,
                                       duration_ms=a.duration_ms) for a in outbox.attempts_of(s, d.id)],
        ) for d in rows]
