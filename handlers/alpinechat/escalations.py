"""AlpineChat operations tagged `Escalations`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def post_escalate(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")


def get_escalations(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
