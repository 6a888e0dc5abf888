"""Errors the domain raises; each API's runtime renders them in its own documented shape."""
from __future__ import annotations


class DomainError(Exception):
    """A failure named by a code of the owning API's contract. The HTTP status is not
    chosen here: the renderer reads it from that contract's `x-codes` (the spec is the
    one truth for statuses)."""

    def __init__(self, code: str, message: str | None = None, *, headers: dict[str, str] | None = None):
        if not isinstance(code, str):
            raise TypeError("DomainError takes the error code, not a status: the status comes from the spec's x-codes")
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.headers = headers or {}
