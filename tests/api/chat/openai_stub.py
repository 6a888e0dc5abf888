"""A loopback OpenAI-compatible server for tests: `/v1/chat/completions` (streamed),
`/v1/moderations`, and Azure's `/openai/deployments/{name}/chat/completions`, served by
uvicorn in a thread and driven by directives in the last user message:

  [[tool:NAME {json args}]]  first call answers with that tool call, the next with text
  [[length]]                 text, then finish_reason "length"
  [[error]]                  HTTP 500 before streaming
  [[midfail]]                some text, then the connection breaks
  [[slow:S]]                 waits S seconds before the first chunk
  [[drip:N:S]]               N chunks, S seconds apart
  [[content_filter]]         finish_reason "content_filter"
  [[nousage]]                no usage chunk
  [[flag]]                   flagged by /v1/moderations
  [[say:"json string"]]      answers with that text (in three chunks) instead of the usual one
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ANSWER = ["Hallo ", "aus ", "dem ", "Stub."]
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


def _chunk(model: str, delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class OpenAIStub:
    def __init__(self):
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/openai/deployments/{deployment}/chat/completions", self.completions, methods=["POST"]),
            Route("/v1/moderations", self.moderations, methods=["POST"]),
            Route("/openai/moderations", self.moderations, methods=["POST"]),
        ])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> OpenAIStub:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def calls_with(self, marker: str) -> list[dict]:
        """Recorded completion requests whose last user message contains `marker`."""
        found = []
        for body in self.requests:
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users and marker in (users[-1].get("content") or ""):
                found.append(body)
        return found

    async def moderations(self, request: Request):
        body = await request.json()
        text = body["input"] if isinstance(body["input"], str) else " ".join(body["input"])
        flagged = "[[flag]]" in text
        return JSONResponse({"id": "modr-stub", "model": "omni-moderation-latest", "results": [
            {"flagged": flagged, "categories": {}, "category_scores": {}}]})

    async def completions(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.url.path)
        model = body.get("model", "")
        users = [m for m in body["messages"] if m.get("role") == "user"]
        last = users[-1]["content"] if users else ""
        if "[[error]]" in last:
            return JSONResponse({"error": {"message": "stub failure", "type": "server_error"}}, status_code=500)
        tool = re.search(r"\[\[tool:(\w+)\s*(\{.*?\})?\]\]", last)
        after_tool = body["messages"][-1].get("role") == "tool"
        slow = re.search(r"\[\[slow:([\d.]+)\]\]", last)
        drip = re.search(r"\[\[drip:(\d+):([\d.]+)\]\]", last)

        async def stream():
            if slow:
                await asyncio.sleep(float(slow.group(1)))
            yield _chunk(model, {"role": "assistant", "content": ""})
            if tool and not after_tool:
                arguments = tool.group(2) or "{}"
                yield _chunk(model, {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                     "function": {"name": tool.group(1), "arguments": ""}}]})
                half = len(arguments) // 2  # arguments arrive in pieces, as they do upstream
                for piece in (arguments[:half], arguments[half:]):
                    yield _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                yield _chunk(model, {}, "tool_calls")
                yield _chunk(model, None, usage={"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55})
                return
            words = ANSWER
            say = re.search(r'\[\[say:("(?:[^"\\]|\\.)*")\]\]', last)
            if say:
                text = json.loads(say.group(1))
                third = max(1, len(text) // 3)
                words = [text[:third], text[third:2 * third], text[2 * third:]]
            if drip:
                words = [f"w{i} " for i in range(int(drip.group(1)))]
            for i, word in enumerate(words):
                if drip and i:
                    await asyncio.sleep(float(drip.group(2)))
                yield _chunk(model, {"content": word})
                if "[[midfail]]" in last and i == 1:
                    raise RuntimeError("stub breaks the stream")
            finish = "length" if "[[length]]" in last else "content_filter" if "[[content_filter]]" in last else "stop"
            yield _chunk(model, {}, finish)
            if "[[nousage]]" not in last:
                yield _chunk(model, None, usage=USAGE)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")
