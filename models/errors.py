"""Errors the domain raises; each API's runtime renders them in its own documented shape."""
from __future__ import annotations


class DomainError(Exception):
    """A failure with an HTTP status and a code from the owning API's contract."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or code)
        self.status_code = status  # connexion's security layer ranks errors by this
        self.code = code
        self.message = message or code
        self.headers = headers or {}
