"""AlpineChat operations tagged `Leads`: built in a later issue."""
from __future__ import annotations

from models.errors import DomainError


def post_lead(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")


def get_leads(*args, **kwargs):
    raise DomainError(501, "not_implemented", "Not implemented yet.")
