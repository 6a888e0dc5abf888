"""Chat fixtures: the loopback OpenAI-compatible server, an app wired to it, a live
uvicorn server around that app (for real streaming and disconnects), and SSE parsing."""
from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time

import pytest
import uvicorn

from handlers.runtime import sse
from handlers.runtime.specs import compile_schema, load_contracts
from models import knowledge
from models.chat.config import ChatConfig, PriceTable

from .openai_stub import OpenAIStub

PRICES = {"stub-model": {"input": 1.0, "output": 2.0}, "extractive": {"input": 0, "output": 0},
          "*": {"input": 5.0, "output": 15.0}}


@pytest.fixture(scope="session")
def openai_stub():
    stub = OpenAIStub().start()
    yield stub
    stub.stop()


def chat_config(**overrides) -> ChatConfig:
    values = dict(prices=PriceTable.from_mapping(PRICES), keepalive_seconds=0.2, turn_timeout_seconds=8.0,
                  max_output_tokens=300, moderation=True)
    values.update(overrides)
    return ChatConfig(**values)


@pytest.fixture(scope="session")
def chat_app(settings, database, openai_stub):
    from handlers.runtime.app import create_app

    chat_settings = dataclasses.replace(settings, openai_api_key="sk-test", openai_base_url=openai_stub.url + "/v1",
                                        openai_model="stub-model", openai_timeout=1.5)
    app = create_app(chat_settings, database=database)
    sse.configure_chat(app, chat_config())
    return app


@pytest.fixture
def chat_client(chat_app):
    with chat_app.test_client() as client:
        yield client


@pytest.fixture
def chat_engine(chat_app):
    return sse.engine_for(chat_app.app.extensions["runtime"])


@pytest.fixture(scope="session")
def live_chat_server(chat_app):
    """The chat app under a real uvicorn server on loopback."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(chat_app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="session")
def event_validator():
    api = load_contracts().alpinechat
    return compile_schema(api.schema("ChatStreamEvent"), api.source)


def parse_sse(body: str) -> tuple[list[dict], list[str]]:
    """The `data:` events and the comment lines of an SSE body."""
    events, comments = [], []
    for block in body.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            elif line.startswith(":"):
                comments.append(line)
    return events, comments


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def text_of(events: list[dict]) -> str:
    return "".join(e["content"] for e in events if e["type"] == "text")


@pytest.fixture
def add_knowledge(database):
    def add(chatbot_id, *docs, language="de"):
        with database.unit_of_work() as s:
            for i, doc in enumerate(docs):
                knowledge.import_document(s, chatbot_id, source=doc.get("source", f"doc{i}.md"), title=doc["title"],
                                          text_=doc["text"], language=doc.get("language", language),
                                          url=doc.get("url"), meta=doc.get("meta"))

    return add
