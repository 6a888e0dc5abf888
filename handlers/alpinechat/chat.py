"""AlpineChat operations tagged `Chat`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def post_chat(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
