"""WePeople tenancy: organizations, their apps, and the `wp_live_*` keys of each app.

Events, workers, snapshots and idempotency records live in their own modules.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import Connection, ForeignKey, String, UniqueConstraint, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, validates

from models.db import Base, CreatedAt, Prepared, Slug, Str200, UUIDPk
from models.keys import WEPEOPLE_KEY_PREFIX, find_active_key_row, issue_key, revoke

# The keys of x-limits.plans in specs/wepeople-ingest.yaml.
PLANS = ("free", "starter", "growth", "enterprise")


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[UUIDPk]
    name: Mapped[Str200]
    plan: Mapped[str] = mapped_column(String(20), default="starter")
    # Switched off by an operator independently of the plan (402 api_disabled).
    api_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[CreatedAt]

    apps: Mapped[list[App]] = relationship(back_populates="organization")

    @validates("plan")
    def _check_plan(self, _key, plan: str) -> str:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; expected one of {', '.join(PLANS)}")
        return plan


class App(Base):
    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("organization_id", "slug"),)

    id: Mapped[UUIDPk]
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    slug: Mapped[Slug]
    name: Mapped[Str200]
    # None allows every event type.
    allowed_event_types: Mapped[list[str] | None]
    created_at: Mapped[CreatedAt]

    organization: Mapped[Organization] = relationship(back_populates="apps")


class IngestApiKey(Base):
    __tablename__ = "ingest_api_keys"

    id: Mapped[UUIDPk]
    # Denormalized from the app so per-organization limits need no join.
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[Str200]
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    organization: Mapped[Organization] = relationship()
    app: Mapped[App] = relationship()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def create_organization(
    session: Session, name: str, plan: str = "starter", api_enabled: bool = True
) -> Organization:
    org = Organization(name=name, plan=plan, api_enabled=api_enabled)
    session.add(org)
    session.flush()
    return org


def list_organizations(session: Session) -> list[Organization]:
    return list(session.scalars(select(Organization).order_by(Organization.created_at)))


def create_app(
    session: Session,
    org: Organization,
    slug: str,
    name: str,
    allowed_event_types: Iterable[str] | None = None,
) -> App:
    app = App(
        organization=org,
        slug=slug,
        name=name,
        allowed_event_types=None if allowed_event_types is None else list(allowed_event_types),
    )
    session.add(app)
    session.flush()
    return app


def get_app(session: Session, app_id: uuid.UUID) -> App | None:
    return session.get(App, app_id)


def find_app(session: Session, org: Organization, slug: str) -> App | None:
    return session.scalar(select(App).where(App.organization_id == org.id, App.slug == slug))


def list_apps(session: Session, organization_id: uuid.UUID | None = None) -> list[App]:
    query = select(App).order_by(App.created_at)
    if organization_id is not None:
        query = query.where(App.organization_id == organization_id)
    return list(session.scalars(query))


def create_ingest_key(
    session: Session, app: App, name: str = "default"
) -> tuple[IngestApiKey, str]:
    """Returns the stored key and the raw `wp_live_*` token, which is not kept anywhere."""
    issued = issue_key(WEPEOPLE_KEY_PREFIX)
    key = IngestApiKey(
        organization_id=app.organization_id,
        app=app,
        key_hash=issued.key_hash,
        prefix=issued.prefix,
        last4=issued.last4,
        name=name,
    )
    session.add(key)
    session.flush()
    return key, issued.raw


# Everything a request's principal needs, in one prebuilt statement (every request
# authenticates; building and loading ORM entities cost more than the query).
_INGEST_PRINCIPAL = Prepared(
    select(IngestApiKey.id, IngestApiKey.key_hash, IngestApiKey.revoked_at,
           Organization.id.label("organization_id"), Organization.plan, Organization.api_enabled,
           App.id.label("app_id"), App.slug.label("app_slug"), App.name.label("app_name"))
    .join(Organization, Organization.id == IngestApiKey.organization_id)
    .join(App, App.id == IngestApiKey.app_id)
    .where(IngestApiKey.key_hash == bindparam("key_hash"))
)


def find_ingest_principal(session: Session | Connection, raw_key: str):
    """The active key's row (id, organization_id, plan, api_enabled, app_id, app_slug,
    app_name), or None."""
    return find_active_key_row(session, _INGEST_PRINCIPAL, raw_key, WEPEOPLE_KEY_PREFIX)


def revoke_ingest_key(session: Session, key_id: uuid.UUID) -> IngestApiKey | None:
    """Revokes the key (idempotently: the first revocation time is kept); None if unknown."""
    return revoke(session.get(IngestApiKey, key_id))


def list_ingest_keys(session: Session, app_id: uuid.UUID | None = None) -> list[IngestApiKey]:
    query = select(IngestApiKey).order_by(IngestApiKey.created_at)
    if app_id is not None:
        query = query.where(IngestApiKey.app_id == app_id)
    return list(session.scalars(query))
