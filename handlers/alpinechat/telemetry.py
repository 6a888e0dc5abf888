"""AlpineChat operations tagged `Telemetry`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def post_chat_telemetry_proactive(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
