"""What handlers/runtime/http_protocol.py and body.py rely on, checked without a server.

The protocol subclasses uvicorn's httptools protocol and builds its RequestResponseCycle:
when a uvicorn release renames or reshapes what it overrides or calls, these tests name
the piece instead of letting the server fail on its first hostile request."""
from __future__ import annotations

import asyncio
import gzip
import inspect
import zlib

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from handlers.runtime.body import (
    BodyCorrupt,
    BodyDeadlines,
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    codings_of,
    read_body,
)
from handlers.runtime.http_protocol import EdgeHttpToolsProtocol, EdgeUvicornWorker

OVERRIDDEN = ["connection_made", "connection_lost", "data_received", "send_400_response", "on_message_begin",
              "on_url", "on_header", "on_headers_complete", "on_message_complete"]


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_uvicorn_still_has_each_overridden_method(name):
    assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol.{name} is gone"
    assert name in vars(EdgeHttpToolsProtocol)


def test_uvicorn_internals_the_protocol_calls():
    for name in ("_start_asgi_task", "_unset_keepalive_if_required"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    # data_received is replaced by EdgeHttpToolsProtocol._feed: uvicorn's must still do only that.
    source = inspect.getsource(HttpToolsProtocol.data_received)
    for step in ("_unset_keepalive_if_required", "feed_data", "HttpParserError", "send_400_response",
                 "HttpParserUpgrade"):
        assert step in source, step
    cycle_params = set(inspect.signature(RequestResponseCycle.__init__).parameters)
    assert {"scope", "transport", "flow", "logger", "access_logger", "access_log", "default_headers",
            "message_event", "expect_100_continue", "keep_alive", "on_response"} <= cycle_params
    # Attributes set by HttpToolsProtocol.__init__ that the subclass reads.
    source = inspect.getsource(HttpToolsProtocol.__init__)
    for attribute in ("self.pipeline", "self.cycle", "self.app", "self.server_state", "self.app_state",
                      "self.root_path", "self.asgi_version", "self.loop", "self.access_log"):
        assert attribute in source, attribute
    for attribute in ("self.more_body", "self.keep_alive", "self.response_complete", "self.response_started"):
        assert attribute in inspect.getsource(RequestResponseCycle.__init__), attribute


def test_worker_config_is_accepted_by_uvicorn():
    config = Config(app=lambda scope, receive, send: None, **EdgeUvicornWorker.CONFIG_KWARGS)
    config.load()
    assert config.http_protocol_class is EdgeHttpToolsProtocol
    assert config.ws_protocol_class is None
    assert all(name != b"server" for name, _ in config.encoded_headers)


# -- body reading -------------------------------------------------------------------------

def _receiver(chunks, delay=0.0):
    pending = list(chunks)

    async def receive():
        if delay:
            await asyncio.sleep(delay)
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return receive


GENEROUS = BodyDeadlines(total=5, idle=5)  # frozen: one instance serves every call


def _read(chunks, *, cap=1000, coding=None, delay=0.0, deadlines=GENEROUS):
    return asyncio.run(read_body(_receiver(chunks, delay), cap=cap, coding=coding, deadlines=deadlines))


def test_plain_gzip_deflate_and_raw_deflate_bodies():
    payload = b'{"a": 1}' * 20
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(payload) + raw.flush()
    assert _read([payload[:5], payload[5:]]) == payload
    gz = gzip.compress(payload)
    assert _read([gz[:1], gz[1:7], gz[7:]], coding="gzip") == payload
    assert _read([zlib.compress(payload)], coding="deflate") == payload
    assert _read([raw_deflate], coding="deflate") == payload
    assert _read([gzip.compress(payload[:9]) + gzip.compress(payload[9:])], coding="gzip") == payload


def test_a_bomb_stops_at_the_cap_while_inflating():
    bomb = gzip.compress(b"0" * 50_000_000)  # ~50 KB on the wire
    with pytest.raises(BodyTooLarge):
        _read([bomb[i:i + 4096] for i in range(0, len(bomb), 4096)], cap=1_000_000, coding="gzip")
    assert _read([gzip.compress(b"0" * 1000)], cap=1000, coding="gzip") == b"0" * 1000
    with pytest.raises(BodyTooLarge):
        _read([gzip.compress(b"0" * 1001)], cap=1000, coding="gzip")


def test_wire_bytes_count_against_the_cap_too():
    with pytest.raises(BodyTooLarge):
        _read([b"x" * 600, b"x" * 600], cap=1000)


@pytest.mark.parametrize("chunks, coding", [
    ([gzip.compress(b"{}")[:-4]], "gzip"),  # truncated (no size trailer)
    ([b"not gzip at all"], "gzip"),
    ([zlib.compress(b"{}") + b"junk"], "deflate"),
    ([b""], "gzip"),
    ([gzip.compress(b"{}") + b"junk"], "gzip"),
])
def test_corrupt_streams(chunks, coding):
    with pytest.raises(BodyCorrupt):
        _read(chunks, coding=coding)


def test_deadlines_and_disconnect():
    with pytest.raises(BodyTimeout):
        _read([b"a", b"b"], delay=0.2, deadlines=BodyDeadlines(total=5, idle=0.05))
    with pytest.raises(BodyTimeout):
        _read([b"a"] * 50, delay=0.02, deadlines=BodyDeadlines(total=0.3, idle=5))
    with pytest.raises(ClientGone):
        asyncio.run(read_body(_receiver([]), cap=10, coding=None, deadlines=BodyDeadlines(1, 1)))


def test_codings_of():
    assert codings_of(None) == []
    assert codings_of("identity") == []
    assert codings_of(" GZip ") == ["gzip"]
    assert codings_of("deflate, gzip") == ["deflate", "gzip"]
