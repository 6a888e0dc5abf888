"""Alembic environment: compares against every model and runs on SQLite or PostgreSQL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import JSON, create_engine
from sqlalchemy.pool import NullPool

from models.config import Settings
from models.db import Base, UTCDateTime
from models.registry import load_all

load_all()
target_metadata = Base.metadata
config = context.config


def database_url() -> str:
    return (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or Settings.from_env().database_url
    )


def render_item(type_, obj, autogen_context):
    if type_ != "type":
        return False
    # Revisions must not import application code that may change later; the
    # decorator only converts values, the column itself is a timezone-aware DateTime.
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    # Alembic's own rendering of this variant references an unimported `Text`.
    if isinstance(obj, JSON) and "postgresql" in obj._variant_mapping:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A plain engine, not models.db.make_engine: with SQLite's foreign_keys pragma on,
    # the table rebuilds of batch mode would cascade deletes into child tables.
    engine = create_engine(database_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
                render_item=render_item,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
