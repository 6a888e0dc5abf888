"""AlpineChat operations tagged `Feedback`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def post_feedback(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
