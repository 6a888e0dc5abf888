"""Reading a request body at the edge: within its cap, its deadlines and its coding.

The cap counts the bytes the application will see: a compressed body is inflated while
it streams in, never past the cap (zlib's `max_length`), so a decompression bomb costs
at most the cap in memory and the CPU to produce it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import zlib

from starlette.types import Receive

IDENTITY = "identity"


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class BodyCorrupt(Exception):
    """The coding's stream is broken: truncated, bad header or checksum, trailing bytes."""


class ClientGone(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class BodyDeadlines:
    total: float  # seconds for the whole body
    idle: float  # seconds without a byte


def codings_of(header: str | None) -> list[str]:
    """The Content-Encoding's codings in the order they were applied, identity left out."""
    return [c for c in (part.strip().lower() for part in (header or "").split(",")) if c and c != IDENTITY]


class _Inflater:
    """gzip (several members allowed, as gzip(1) writes them) or deflate (zlib-wrapped,
    or raw as some clients send it), inflated at most `limit` bytes at a time."""

    def __init__(self, coding: str):
        self.coding = coding
        self.decompressor = None
        self.pending = b""  # deflate: bytes held until its first two tell zlib from raw

    def _start(self, head: bytes):
        if self.coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # RFC 9110's deflate is the zlib format; a raw deflate stream fails its header check.
        zlib_header = len(head) >= 2 and (head[0] & 0x0F) == 8 and ((head[0] << 8) | head[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflates `data`; raises BodyTooLarge as soon as the output would pass `room`."""
        if self.decompressor is None:
            self.pending += data
            if len(self.pending) < 2:
                return b""
            data, self.pending = self.pending, b""
            self.decompressor = self._start(data)
        out = bytearray()
        try:
            while data:
                if self.decompressor.eof:
                    if self.coding != "gzip":
                        raise BodyCorrupt("bytes after the end of the compressed stream")
                    self.decompressor = self._start(data)  # the next gzip member
                chunk = self.decompressor.decompress(data, room - len(out) + 1)
                out += chunk
                if len(out) > room:
                    raise BodyTooLarge
                data = self.decompressor.unconsumed_tail or self.decompressor.unused_data
        except zlib.error as exc:
            raise BodyCorrupt(str(exc)) from None
        return bytes(out)

    def finish(self) -> None:
        if self.pending or self.decompressor is None or not self.decompressor.eof:
            raise BodyCorrupt("the compressed stream ends early")


async def read_body(receive: Receive, *, cap: int | None, coding: str | None,
                    deadlines: BodyDeadlines) -> bytes:
    """The whole body, decoded. Raises BodyTooLarge past `cap` (on the wire or decoded),
    BodyTimeout past a deadline, BodyCorrupt for a broken coding, ClientGone."""
    inflater = _Inflater(coding) if coding else None
    body = bytearray()
    wire = 0
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadlines.total
    while True:
        wait = min(deadlines.idle, ends - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        data = message.get("body", b"")
        wire += len(data)
        if cap is not None and wire > cap:
            raise BodyTooLarge
        if inflater is not None:
            body += inflater.feed(data, (cap - len(body)) if cap is not None else 1 << 62)
        else:
            body += data
        if not message.get("more_body", False):
            break
    if inflater is not None:
        inflater.finish()
    return bytes(body)
