"""Deploys and dying workers, for real: gunicorn with the uvicorn worker serving chat
against the loopback OpenAI stub, read by a real HTTP client.

- SIGTERM: streams that end within the graceful timeout finish as usual; longer ones
  end shortly before it with the localized `error`, `usage`, `finish: error`, `done`,
  and their partial answers and real cost are stored.
- SIGKILL of a worker mid-stream: its turn's reservation is settled by the sweep.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from handlers.runtime.specs import load_contracts
from models import conversations
from models.chat.config import PriceTable
from models.chat.reservations import INTERRUPTED
from models.config import ROOT
from models.conversations import Message
from scripts.ports import free_port
from tests.servers import gunicorn_env

from .conftest import PRICES, parse_sse, text_of, types_of

GRACEFUL_TIMEOUT = 6
MARGIN = 2


class Gunicorn:
    def __init__(self, settings, stub, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = gunicorn_env(settings, self.port, **{
            "WEB_CONCURRENCY": "1", "LOG_LEVEL": "info", "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": stub.url + "/v1", "OPENAI_MODEL": "stub-model", "OPENAI_TIMEOUT": "5",
            "CHAT_PRICES": json.dumps(PRICES), "CHAT_KEEPALIVE_SECONDS": "1", "CHAT_TURN_TIMEOUT": "60",
            "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT), "CHAT_SHUTDOWN_MARGIN_SECONDS": str(MARGIN), **env})
        self.process: subprocess.Popen | None = None

    def start(self, log_path: Path) -> Gunicorn:
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
             "handlers.runtime.asgi:app"], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: stop() ends the workers too
        self.log_path = log_path
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/api/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start:\n" + log_path.read_text()[-4000:])
            time.sleep(0.2)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self) -> None:
        # The uvicorn worker does not notice its master's death: a killed master would
        # leave its workers running. So: the master's graceful stop, then the whole group.
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(GRACEFUL_TIMEOUT + 5)
            except subprocess.TimeoutExpired:
                pass
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.process.poll() is None:
                self.process.wait(10)
        self.log.close()


class Stream:
    """One chat turn read line by line by httpx in a thread, with the time each event came."""

    def __init__(self, server: Gunicorn, bot, message: str, session_id: str | None = None):
        self.session_id = session_id or f"sess-{uuid.uuid4().hex[:12]}"
        self.events: list[tuple[float, dict]] = []
        self.body = ""
        self.status: int | None = None
        self.error: BaseException | None = None
        self._args = (server.url + f"/api/chat/{bot.slug}",
                      {"session_id": self.session_id, "message": message}, bot.headers)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        url, body, headers = self._args
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    self.body += line + "\n"
                    if line.startswith("data: "):
                        self.events.append((time.monotonic(), json.loads(line[6:])))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for_text(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["type"] == "text" for _, e in self.events):
            assert time.monotonic() < deadline and self.thread.is_alive(), (self.status, self.body, self.error)
            time.sleep(0.02)

    def join(self, timeout: float = 30) -> list[dict]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "stream did not end"
        assert self.error is None, self.error
        events, _ = parse_sse(self.body)
        return events


def _assistant_of(database, bot, session_id) -> Message:
    with database.unit_of_work() as s:
        conversation = conversations.find_conversation_by_session(s, bot.chatbot_id, session_id)
        return s.scalars(select(Message).where(Message.conversation_id == conversation.id,
                                               Message.role == "assistant").order_by(Message.seq.desc())).first()


@pytest.fixture
def gunicorn_chat(settings, openai_stub, tmp_path):
    servers = []

    def start(**env) -> Gunicorn:
        server = Gunicorn(settings, openai_stub, **env).start(tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_sigterm_lets_short_streams_finish_and_ends_long_ones_cleanly(gunicorn_chat, make_chatbot, database,
                                                                     event_validator):
    server = gunicorn_chat()
    bot = make_chatbot(language="it")
    # 200 chunks 0.1 s apart: far longer than the graceful timeout; 8 chunks 0.3 s apart: well within it.
    long = Stream(server, bot, "Raccontami tutto [[drip:200:0.1]]")
    short = Stream(server, bot, "Breve [[drip:8:0.3]]")
    long.wait_for_text()
    short.wait_for_text()
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    short_events = short.join()
    assert short.status == 200
    assert text_of(short_events) == "".join(f"w{i} " for i in range(8))  # finished, not cut
    assert types_of(short_events)[-3:] == ["usage", "finish", "done"] and short_events[-2]["reason"] == "stop"
    assert any(at > signalled for at, e in short.events if e["type"] == "text")

    events = long.join()
    assert long.status == 200
    localized = load_contracts().alpinechat.schema("ChatErrorEvent")["properties"]["message"]["x-localized"]
    assert types_of(events)[-4:] == ["error", "usage", "finish", "done"]
    assert events[-4] == {"type": "error", "message": localized["shutting_down"]["it"]}
    assert events[-2] == {"type": "finish", "reason": "error"}
    for event in events:
        assert event_validator.is_valid(event), event
    streamed = text_of(events)
    assert streamed and len(streamed.split()) < 200  # partial
    # It ran on after the signal, and ended before the kill.
    assert any(at > signalled for at, e in long.events if e["type"] == "text")
    assert server.process.wait(GRACEFUL_TIMEOUT + 10) == 0
    assert "ending 1 open chat stream(s) before the graceful timeout" in server.log_path.read_text()

    stored = _assistant_of(database, bot, long.session_id)
    assert stored.content == streamed and stored.finish_reason == "error"
    assert stored.tool_payload == {"error": "server shutting down"}
    usage = events[-3]
    # Settled to what was used (the prompt, and the text so far, estimated: the stub's
    # usage report never came), far below the reservation.
    price = PriceTable.from_mapping(PRICES)
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert stored.cost_usd == pytest.approx(usage["cost_usd"]) == pytest.approx(
        price.cost("stub-model", usage["prompt_tokens"], usage["completion_tokens"]))
    assert (stored.prompt_tokens, stored.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])


def test_reservation_of_a_killed_worker_is_settled_by_the_servers_sweep(gunicorn_chat, make_chatbot, database):
    # Sweeps every second; a reservation counts as stale after 3 s (default: turn timeout + 60 s).
    server = gunicorn_chat(CHAT_SWEEP_SECONDS="1", CHAT_RESERVATION_STALE_SECONDS="3")
    bot = make_chatbot()
    stream = Stream(server, bot, "Erzähl [[drip:200:0.1]]")
    stream.wait_for_text()
    pending = _assistant_of(database, bot, stream.session_id)
    assert pending.finish_reason is None and pending.cost_usd > 0  # the worst case is reserved
    (worker,) = server.workers()
    os.kill(worker, signal.SIGKILL)
    stream.thread.join(30)
    assert "done" not in types_of(parse_sse(stream.body)[0])  # cut: nothing could end it
    # gunicorn starts a new worker; its sweep settles the dead worker's reservation.
    deadline = time.monotonic() + 60
    while (settled := _assistant_of(database, bot, stream.session_id)).finish_reason is None:
        assert time.monotonic() < deadline, "the reservation was not settled"
        time.sleep(0.25)
    assert settled.finish_reason == INTERRUPTED
    price = PriceTable.from_mapping(PRICES)
    # Settled to one prompt (its estimate), not the worst case.
    assert settled.cost_usd == pytest.approx(price.cost("stub-model", pending.prompt_tokens, 0))
    assert 0 < settled.cost_usd < pending.cost_usd


# ── The turn's side, in process ──────────────────────────────────────────────


def _run_turn(engine, plan, interrupt_after=None, interrupt_on=None):
    """Runs the turn on a loop of its own; interrupted after `interrupt_after` text events
    (0: before it starts), or on the first event of type `interrupt_on`."""
    import asyncio

    turn = engine.turn(plan)
    events: list[dict] = []

    async def emit(event):
        events.append(event)
        if event["type"] == "text" and sum(e["type"] == "text" for e in events) == interrupt_after:
            turn.interrupt()
        if event["type"] == interrupt_on:
            turn.interrupt()

    async def main():
        if interrupt_after == 0:
            turn.interrupt()
        try:
            await turn.run(emit)
        finally:
            await engine.providers.aclose()  # this loop's upstream clients

    asyncio.run(main())
    turn.finalize()
    return turn, events


def _prepare(engine, database, bot, message):
    with database.unit_of_work() as s:
        return engine.prepare(s, slug=bot.slug, principal={"tenant_id": str(bot.tenant_id), "chatbot_id": None},
                              request={"session_id": f"sess-{uuid.uuid4().hex[:12]}", "message": message})


def test_interrupted_turn_ends_with_the_documented_tail_and_is_settled(chat_engine, make_chatbot, database):
    bot = make_chatbot(language="en")
    plan = _prepare(chat_engine, database, bot, "Tell me everything [[drip:50:0.05]]")
    _turn, events = _run_turn(chat_engine, plan, interrupt_after=3)
    assert types_of(events)[-4:] == ["error", "usage", "finish", "done"] and events[-2]["reason"] == "error"
    assert events[-4]["message"] == chat_engine.localize("shutting_down", "en")
    assert text_of(events) == "w0 w1 w2 "
    with database.unit_of_work() as s:
        stored = s.get(Message, plan.assistant_message_id)
        assert (stored.content, stored.finish_reason, stored.cost_usd) == ("w0 w1 w2 ", "error", events[-3]["cost_usd"])
    assert 0 < stored.cost_usd < plan.reservation_usd


def test_turn_interrupted_before_the_provider_is_asked_costs_nothing(chat_engine, make_chatbot, database,
                                                                    openai_stub):
    bot = make_chatbot(language="de")
    plan = _prepare(chat_engine, database, bot, "Früh beendet #early")
    _turn, events = _run_turn(chat_engine, plan, interrupt_after=0)
    assert types_of(events) == ["error", "usage", "finish", "done"]
    assert events[1] == {"type": "usage", "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    assert openai_stub.calls_with("#early") == []
    with database.unit_of_work() as s:
        stored = s.get(Message, plan.assistant_message_id)
        assert (stored.finish_reason, stored.cost_usd) == ("error", 0)


def test_interrupt_after_the_answer_changes_nothing(chat_engine, make_chatbot, database):
    bot = make_chatbot()
    plan = _prepare(chat_engine, database, bot, "Kurz")
    _turn, events = _run_turn(chat_engine, plan, interrupt_on="usage")
    assert events[-2] == {"type": "finish", "reason": "stop"} and "error" not in types_of(events)
    with database.unit_of_work() as s:
        assert s.get(Message, plan.assistant_message_id).finish_reason == "stop"
