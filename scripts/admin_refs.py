"""How admin commands find what an option names: an id, or the name people use.

Apps and chatbots by slug, organizations and tenants by name (they have no slug); an id
always works. A reference that names nothing, or more than one thing, is a CommandError
(a one-line message, exit 1), never a traceback.
"""
from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import alpinechat, wepeople


class CommandError(ValueError):
    """A user mistake (unknown id, bad value): scripts/admin reports it without a traceback."""


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _one(rows: list, what: str, ref: str, hint: str):
    if not rows:
        raise CommandError(f"{what} {ref!r} not found")
    if len(rows) > 1:
        raise CommandError(f"{what} {ref!r} is ambiguous ({len(rows)} match); {hint}")
    return rows[0]


def _by_id_or_name(session: Session, model, ref: str, what: str):
    ref = ref.strip()
    ident = _as_uuid(ref)
    if ident is not None and (found := session.get(model, ident)) is not None:
        return found
    rows = session.scalars(select(model).where(model.name == ref)).all()
    if not rows:  # "acme" finds "Acme"
        rows = session.scalars(select(model).where(func.lower(model.name) == ref.lower())).all()
    return _one(list(rows), what, ref, "give its id")


def organization(session: Session, ref: str) -> wepeople.Organization:
    """An organization by id or name."""
    return _by_id_or_name(session, wepeople.Organization, ref, "organization")


def tenant(session: Session, ref: str) -> alpinechat.Tenant:
    """A tenant by id or name."""
    return _by_id_or_name(session, alpinechat.Tenant, ref, "tenant")


def app(session: Session, ref: str, org: wepeople.Organization | None = None) -> wepeople.App:
    """An app by id, or by slug (unique within an organization: `org` narrows it)."""
    ref = ref.strip()
    ident = _as_uuid(ref)
    if ident is not None and (found := wepeople.get_app(session, ident)) is not None:
        if org is None or found.organization_id == org.id:
            return found
    statement = select(wepeople.App).where(wepeople.App.slug == ref)
    if org is not None:
        statement = statement.where(wepeople.App.organization_id == org.id)
    return _one(list(session.scalars(statement).all()), "app", ref, "give its id, or --org")


def chatbot(session: Session, ref: str) -> alpinechat.Chatbot:
    """A chatbot by id or slug (slugs are unique across tenants)."""
    ref = ref.strip()
    ident = _as_uuid(ref)
    if ident is not None and (found := session.get(alpinechat.Chatbot, ident)) is not None:
        return found
    return _one([bot] if (bot := alpinechat.get_chatbot(session, ref)) else [], "chatbot", ref, "")
