"""A raw-socket HTTP/1.1 client that can break framing on purpose, and a parser for what
comes back (several pipelined responses, Content-Length or chunked)."""
from __future__ import annotations

import dataclasses
import select
import socket
import time


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclasses.dataclass
class Exchange:
    responses: list[Response]
    closed: bool  # the server closed the connection (or reset it)
    elapsed: float
    leftover: bytes  # bytes that did not parse as a response


def parse_responses(data: bytes, head_only: bool = False) -> tuple[list[Response], bytes]:
    responses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return responses, data
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        rest = data[end + 4:]
        fields = dict(headers)
        if head_only or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in fields:
            size = int(fields["content-length"])
            if len(rest) < size:
                return responses, data
            body, rest = rest[:size], rest[size:]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            position = 0
            while True:
                line_end = rest.find(b"\r\n", position)
                if line_end < 0:
                    return responses, data
                size = int(rest[position:line_end].split(b";")[0], 16)
                if size == 0:
                    trailer_end = rest.find(b"\r\n", line_end + 2)
                    if trailer_end < 0:
                        return responses, data
                    rest = rest[trailer_end + 2:]
                    break
                if len(rest) < line_end + 2 + size + 2:
                    return responses, data
                body += rest[line_end + 2:line_end + 2 + size]
                position = line_end + 2 + size + 2
            body = bytes(body)
        else:
            body, rest = rest, b""  # until close
        if 100 <= status < 200:
            data = rest
            continue
        responses.append(Response(status, headers, body))
        data = rest


def exchange(port: int, request: bytes, *, expect: int = 1, bound: float = 15.0, byte_delay: float = 0.0,
             half_close: bool = False, head_only: bool = False, slow_after: int = 0) -> Exchange:
    """Sends `request` (one byte per `byte_delay` seconds when set), then reads until
    `expect` responses have arrived, the server closes, or `bound` seconds pass."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=bound)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    received = bytearray()
    closed = False

    def pump(timeout: float) -> None:
        nonlocal closed
        readable, _, _ = select.select([sock], [], [], max(timeout, 0))
        if readable:
            try:
                chunk = sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                closed = True
            received.extend(chunk)

    try:
        if byte_delay:
            if slow_after:
                sock.sendall(request[:slow_after])
            for index in range(slow_after, len(request)):
                try:
                    sock.sendall(request[index:index + 1])
                except OSError:
                    closed = True
                    break
                pump(byte_delay)
                if closed or received or time.monotonic() - started > bound:
                    break
        else:
            try:
                sock.sendall(request)
            except OSError:
                pass  # refused mid-send (a huge head): what it answered is read below
        if half_close and not closed:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        while not closed and time.monotonic() - started < bound:
            responses, _ = parse_responses(bytes(received), head_only)
            if len(responses) >= expect:
                break
            pump(min(0.5, bound - (time.monotonic() - started)))
    finally:
        sock.close()
    responses, leftover = parse_responses(bytes(received), head_only)
    return Exchange(responses, closed, time.monotonic() - started, leftover)
