"""The HTTP/1.1 protocol under the app: uvicorn's httptools protocol with the limits it
lacks, and the gunicorn worker that uses it (`gunicorn_conf.worker_class`).

uvicorn caps neither the size nor the number of request headers for httptools (its h11
option and gunicorn's `limit_request_*` do not apply here), and has no deadline for a
request head: a client sending a byte a second, or nothing at all, held a connection
forever, and a 200 MB header was buffered whole. Here:

- the head (request line and headers) is capped at MAX_HEADER_BYTES, counted as it
  arrives, so at most the cap plus one read is ever held; beyond it the answer is 414
  (the target alone is too long) or 431; more than MAX_HEADER_COUNT fields is 431;
- a head must be complete within HEADER_TIMEOUT of its first byte (or of the connection's
  start): 408, or a silent close when nothing was sent;
- a head httptools cannot parse is 400, and a body whose framing breaks (a bad chunk)
  ends its request with 400, instead of uvicorn's plain-text answer.

Every such answer is produced by the application itself (`EdgeMiddleware`, from a
request marked `EDGE_REFUSAL`), so it has the API's error shape and an X-Request-Id.
Body deadlines are the middleware's (it reads every body). This subclasses uvicorn
internals: tests/unit/test_http_protocol.py fails when the methods it relies on change.
"""
from __future__ import annotations

import asyncio
import urllib.parse

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn_worker import UvicornWorker

from handlers.runtime.middleware import EDGE_FRAMING_ERROR, EDGE_REFUSAL
from models.config import Settings


class EdgeHttpToolsProtocol(HttpToolsProtocol):
    settings: Settings | None = None  # read from the environment once per process

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if EdgeHttpToolsProtocol.settings is None:
            EdgeHttpToolsProtocol.settings = Settings.from_env()
        limits = EdgeHttpToolsProtocol.settings
        self.max_head_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.header_timeout = limits.header_timeout
        self._in_head = True  # between a message's start (or the connection's) and its headers' end
        self._head_bytes = 0
        self._head_started = False  # a byte of this head has arrived
        self._header_count = 0
        self._head_size = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered and closing: everything further is ignored

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
            self._head_started = True
        self._feed(data)
        if self._in_head and not self._refused and self._head_bytes > self.max_head_bytes:
            # A head still incomplete past the cap: refused before httptools buffers more.
            self._refuse(*self._head_too_large())

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, except that an Upgrade is ignored (nothing is upgraded
        here): httptools hands everything after such a request's head to the new
        protocol, so the next pipelined request was lost, and so was a body."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0]:] if upgrade.args else b""
            if any(name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0"))
                   for name, value in self.headers or ()):
                # Its body went with the upgrade: refuse the request rather than run it without.
                if self.cycle is not None and not self.cycle.response_started:
                    self.cycle.scope["state"][EDGE_REFUSAL] = (
                        400, "A request with a body cannot ask for an Upgrade here; send it without one.")
                    self.cycle.keep_alive = False
                self._refused = True
                return
            self.parser = httptools.HttpRequestParser(self)
            try:
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            except AttributeError:  # pragma: no cover - httptools < 0.6.3
                pass
            if rest:
                self._feed(rest)

    def _head_too_large(self) -> tuple[int, str]:
        url = getattr(self, "url", b"")  # set when a message begins
        if len(url) > self.max_head_bytes // 2:
            return 414, f"The request target exceeds {self.max_head_bytes // 2} bytes."
        return 431, f"The request line and headers exceed {self.max_head_bytes} bytes."

    def send_400_response(self, msg: str) -> None:
        # httptools could not parse the request: answered by the app, in the API's shape.
        self._refuse(400, "The request is not valid HTTP/1.1: " + msg.rstrip("."))

    # -- parser callbacks ---------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_started = True
        self._header_count = 0
        self._head_size = 0  # the target and the header fields, as parsed
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self.max_header_count:
            return  # counted, not kept: refused when the head ends
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._head_started = False
        self._cancel_head_timer()
        if self._head_size > self.max_head_bytes:
            self.scope["state"][EDGE_REFUSAL] = self._head_too_large()
        elif self._header_count > self.max_header_count:
            self.scope["state"][EDGE_REFUSAL] = (
                431, f"The request has {self._header_count} header fields; "
                     f"at most {self.max_header_count} are allowed.")
        super().on_headers_complete()
        if EDGE_REFUSAL in self.scope["state"] and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next message's head, when it comes (keep-alive times the wait)
        self._head_bytes = 0
        self._head_started = False

    # -- deadlines ----------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused or not self._in_head:
            return
        if not self._head_started:
            self.transport.close()  # an idle connection that never sent a request
            return
        self._refuse(408, f"The request's headers did not arrive within {self.header_timeout:g} s.")

    # -- refusals -----------------------------------------------------------
    def _refuse(self, status: int, message: str) -> None:
        """Answers `status` through the app, then closes; what the client sends further is
        ignored."""
        self._refused = True
        self._cancel_head_timer()
        current = self.cycle
        if current is not None and not current.response_complete and current.more_body and not self._in_head:
            # The framing of the current request's body broke: that request ends with the error.
            current.scope["state"][EDGE_FRAMING_ERROR] = message
            current.keep_alive = False
            current.more_body = False
            current.message_event.set()
            if current.response_started:
                self.transport.close()
            return
        scope = self._refusal_scope(status, message)
        cycle = RequestResponseCycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=False, keep_alive=False, on_response=self.on_response_complete,
        )
        cycle.more_body = False
        self.cycle = cycle
        if current is None or current.response_complete:
            self._start_asgi_task(cycle, self.app)
        else:
            self.pipeline.appendleft((cycle, self.app))  # after the response in progress

    def _refusal_scope(self, status: int, message: str) -> dict:
        url = getattr(self, "url", b"")
        method = "GET"
        if url:  # the method was parsed before the target
            try:
                method = self.parser.get_method().decode("ascii")
            except Exception:
                pass
        path = "/"
        try:
            raw = (httptools.parse_url(url).path or b"/") if url else b"/"
            path = urllib.parse.unquote(raw.decode("latin-1"), errors="replace")
        except Exception:
            raw = b"/"
        state = self.app_state.copy()
        state[EDGE_REFUSAL] = (status, message)
        return {
            "type": "http", "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1", "server": self.server, "client": self.client, "scheme": self.scheme,
            "root_path": self.root_path, "method": method, "path": path[:2048], "raw_path": raw[:2048],
            "query_string": b"", "headers": [], "state": state,
        }


class EdgeUvicornWorker(UvicornWorker):
    """uvicorn's gunicorn worker with the protocol above, no `server` banner, no WebSocket
    upgrades (neither API has one), and no X-Forwarded-For rewriting of the client address:
    uvicorn believed any value from a loopback peer ("999.1.1.1" became the client); the
    app believes it only from TRUSTED_PROXIES (`Runtime.client_ip`)."""

    CONFIG_KWARGS = {"loop": "auto", "http": EdgeHttpToolsProtocol, "ws": "none", "server_header": False,
                     "proxy_headers": False}
