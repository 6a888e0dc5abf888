"""Chat providers: OpenAI and Azure OpenAI through the `openai` SDK (async, streamed),
and an offline extractive provider that quotes the retrieved passages when no key is
configured. Each yields the same small set of events."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from models import knowledge
from models.chat.config import ChatConfig, estimate_prompt_tokens, estimate_tokens


@dataclasses.dataclass(frozen=True)
class TextDelta:
    text: str


@dataclasses.dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclasses.dataclass(frozen=True)
class Finish:
    reason: str  # stop | length | tool_calls | content_filter


class UpstreamError(Exception):
    """The provider failed or timed out; the turn ends with `error` + `finish: error`."""


@dataclasses.dataclass
class ProviderRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    tools: list[dict[str, Any]] | None = None
    # For the extractive provider: what was asked and what was found.
    question: str = ""
    language: str = "de"
    passages: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Provider(Protocol):
    name: str
    supports_tools: bool

    def stream(self, request: ProviderRequest) -> AsyncIterator[TextDelta | ToolCall | Usage | Finish]: ...

    async def flagged(self, text: str) -> bool: ...


class OpenAIProvider:
    """OpenAI, or Azure OpenAI (where `model` is the deployment name)."""

    supports_tools = True

    def __init__(self, clients: UpstreamClients, name: str = "openai"):
        self.clients = clients
        self.name = name

    async def stream(self, request: ProviderRequest):
        import httpx2
        import openai

        # Messages and tools are plain JSON already: passed as `extra_body` they skip the
        # SDK's type-directed transform of the request, about 1.2 ms of CPU per turn.
        arguments: dict[str, Any] = {"messages": request.messages}
        if request.tools:
            arguments["tools"] = request.tools
        tool_parts: dict[int, dict[str, str]] = {}
        usage_seen = False
        shard, client = self.clients.acquire()
        try:
            # The SDK sends the request (auth, base URL or Azure deployment, retries,
            # status errors, timeouts); the body is read here as bytes (still decoded by
            # httpx for any content encoding) and its `data:` lines parsed with orjson:
            # the SDK's pydantic chunk objects cost ~1 ms each, and httpx's text and
            # line iterators another three generator layers per chunk.
            async with client.chat.completions.with_streaming_response.create(
                    model=request.model, messages=(), max_tokens=request.max_tokens,
                    stream=True, stream_options={"include_usage": True}, extra_body=arguments) as response:
                done = False
                pending = b""
                async for data in response.http_response.aiter_bytes():
                    if done:
                        # Read on to the end of the body (it ends right after [DONE]): a
                        # response left unread closes its connection, and the next turn
                        # would pay a new TCP (and TLS) connect.
                        continue
                    lines = (pending + data if pending else data).split(b"\n")
                    pending = lines.pop()  # an incomplete line waits for the next read
                    for line in lines:
                        if line.startswith(b"data:"):
                            events = _chunk_events(line, tool_parts)
                            if events is None:
                                done = True
                                break
                            for event in events:
                                if isinstance(event, Usage):
                                    usage_seen = True
                                yield event
                if not done and pending.startswith(b"data:"):  # a last line without its newline
                    for event in _chunk_events(pending, tool_parts) or ():
                        if isinstance(event, Usage):
                            usage_seen = True
                        yield event
        except (openai.APIError, httpx2.HTTPError, ValueError) as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.clients.release(shard)
        if not usage_seen:  # some deployments do not report usage on streams
            yield Usage(estimate_prompt_tokens(request.messages), 0)

    async def flagged(self, text: str) -> bool:
        import openai

        shard, client = self.clients.acquire()
        try:
            result = await client.moderations.create(input=text)
        except openai.APIError as exc:
            raise UpstreamError(f"moderation: {exc}") from exc
        finally:
            self.clients.release(shard)
        return any(r.flagged for r in result.results)


def _chunk_events(line: bytes, tool_parts: dict[int, dict[str, str]]) -> list | None:
    """The events of one `data:` line of the upstream's stream; None for `[DONE]`. Tool
    call fragments accumulate in `tool_parts` until their choice finishes."""
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return None
    chunk = orjson.loads(payload)
    if not isinstance(chunk, dict):
        raise ValueError("upstream chunk is not a JSON object")
    if chunk.get("error"):
        raise UpstreamError(f"upstream error event: {chunk['error']}")
    events: list = []
    usage = chunk.get("usage")
    if usage:
        events.append(Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            events.append(TextDelta(delta["content"]))
        for call in delta.get("tool_calls") or ():
            part = tool_parts.setdefault(call.get("index") or 0, {"id": "", "name": "", "arguments": ""})
            part["id"] = call.get("id") or part["id"]
            function = call.get("function") or {}
            part["name"] += function.get("name") or ""
            part["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            for index in sorted(tool_parts):
                part = tool_parts[index]
                events.append(ToolCall(part["id"] or f"call_{index}", part["name"], part["arguments"]))
            tool_parts.clear()
            events.append(Finish(choice["finish_reason"]))
    return events


EXTRACTIVE_INTRO = {
    "de": "Automatische Auszüge aus der Wissensbasis (keine KI-Antwort):",
    "en": "Automatic excerpts from the knowledge base (not an AI answer):",
    "it": "Estratti automatici dalla base di conoscenza (non una risposta IA):",
}
EXTRACTIVE_NOTHING = {
    "de": "Dazu habe ich in der Wissensbasis leider nichts gefunden.",
    "en": "I could not find anything about that in the knowledge base.",
    "it": "Non ho trovato nulla al riguardo nella base di conoscenza.",
}
EXTRACTIVE_SOURCE = {"de": "Quelle", "en": "Source", "it": "Fonte"}


class ExtractiveProvider:
    """No network, no model: quotes the sentences of the best passages that match the
    question (models/knowledge.py best_sentences) and names their sources."""

    name = "extractive"
    supports_tools = False

    async def stream(self, request: ProviderRequest):
        language = request.language if request.language in EXTRACTIVE_INTRO else "de"
        if request.passages:
            passages = request.passages[:3]
            parts = [EXTRACTIVE_INTRO[language]]
            for quote in knowledge.best_sentences(request.question, [p["content"] for p in passages]):
                passage = passages[quote.passage]
                source = f" ({EXTRACTIVE_SOURCE[language]}: {passage['url']})" if passage.get("url") else ""
                parts.append(f"\n\n{passage['title']}: {' '.join(quote.sentences)}{source}")
            answer = "".join(parts)
        else:
            answer = EXTRACTIVE_NOTHING[language]
        completion = 0
        words = re.findall(r"\S+\s*|\s+", answer)
        budget = request.max_tokens
        for i in range(0, len(words), 4):
            chunk = "".join(words[i:i + 4])
            cost = estimate_tokens(chunk)
            if completion + cost > budget:
                yield Usage(estimate_prompt_tokens(request.messages), completion)
                yield Finish("length")
                return
            completion += cost
            yield TextDelta(chunk)
            await asyncio.sleep(0)  # let other streams on the loop move
        yield Usage(estimate_prompt_tokens(request.messages), completion)
        yield Finish("stop")

    async def flagged(self, text: str) -> bool:
        return False


class UpstreamClients:
    """SDK clients of one event loop, each with a connection pool of its own, filled in
    order: a request goes to the first client with fewer than `per_client` requests in
    flight. Small pools keep a pool's per-request bookkeeping flat whatever the transport
    (httpcore's, the SDK's default, is O(connections): ~10% of a worker's CPU with hundreds
    of open streams in one pool). At low traffic everything goes through the first client,
    whose kept-alive connections are reused as with one pool. Together the pools allow
    `connections` connections."""

    def __init__(self, make_client, connections: int, per_client: int = 32):
        self.make_client = make_client
        self.per_client = max(1, min(per_client, connections))
        self.max_clients = max(1, -(-connections // self.per_client))
        self.clients: list[Any] = []
        self.in_flight: list[int] = []

    def acquire(self) -> tuple[int, Any]:
        in_flight = self.in_flight
        for index, count in enumerate(in_flight):  # noqa: B007 - `index` is the one the loop breaks on
            if count < self.per_client:
                break
        else:
            if len(self.clients) < self.max_clients:
                self.clients.append(self.make_client(self.per_client))
                in_flight.append(0)
                index = len(in_flight) - 1
            else:  # every pool is full: queue where the fewest wait
                index = min(range(len(in_flight)), key=in_flight.__getitem__)
        in_flight[index] += 1
        return index, self.clients[index]

    def release(self, index: int) -> None:
        self.in_flight[index] -= 1


class ProviderFactory:
    """Chooses the provider from the settings: Azure when an endpoint is set, OpenAI when
    a key is set, the extractive provider otherwise. SDK clients hold connection pools
    bound to one event loop, so there are clients per running loop."""

    def __init__(self, settings, config: ChatConfig):
        self.settings = settings
        self.config = config
        if settings.azure_openai_endpoint and settings.azure_openai_api_key:
            self.kind = "azure"
        elif settings.openai_api_key:
            self.kind = "openai"
        else:
            self.kind = "extractive"
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamClients] = \
            weakref.WeakKeyDictionary()

    def model_for(self, chatbot_model: str | None) -> str:
        if self.kind == "extractive":
            return "extractive"
        return chatbot_model or self.settings.openai_model

    def preload(self) -> None:
        """Imports what the first turn would: the SDK and its chat resources are ~0.7 s
        of CPU, better spent at a worker's start than in a visitor's first answer."""
        if self.kind != "extractive":
            client = self._make_client(1)
            client.chat.completions, client.moderations  # noqa: B018 - touching them imports these lazy resources

    def provider(self) -> Provider:
        if self.kind == "extractive":
            return ExtractiveProvider()
        loop = asyncio.get_running_loop()
        clients = self._clients.get(loop)
        if clients is None:
            clients = self._clients[loop] = UpstreamClients(self._make_client, self.config.upstream_connections)
        return OpenAIProvider(clients, self.kind)

    async def aclose(self) -> None:
        """Closes the running loop's clients and their connections (at shutdown)."""
        clients = self._clients.pop(asyncio.get_running_loop(), None)
        for client in clients.clients if clients else ():
            await client.close()

    def _make_client(self, connections: int):
        import httpx2
        import openai

        s = self.settings
        # Per-chunk read timeout: a stalled upstream fails instead of hanging the stream.
        timeout = httpx2.Timeout(s.openai_timeout, connect=min(5.0, s.openai_timeout))
        # The SDK's aiohttp transport: a chunk costs about a third less CPU than through
        # httpcore (C parser, no anyio timeout scope per read).
        http_client = openai.DefaultAioHttpClient(
            timeout=timeout,
            limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections))
        if self.kind == "azure":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=s.azure_openai_endpoint, api_key=s.azure_openai_api_key,
                api_version=s.azure_openai_api_version or "2024-10-21", timeout=timeout, max_retries=1,
                http_client=http_client)
        return openai.AsyncOpenAI(api_key=s.openai_api_key, base_url=s.openai_base_url, timeout=timeout,
                                  max_retries=1, http_client=http_client)
