"""AlpineChat operations tagged `Conversations`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def get_conversations(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")


def get_conversations_messages(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
