"""Alembic driven from code: no alembic.ini, no dependence on the working directory.

After changing a model, autogenerate a revision against a database at head, then
review it by hand:

    from models.migrate import revision, upgrade
    upgrade("sqlite:///var/revision.db")
    revision("sqlite:///var/revision.db", "what changed")
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def ensure_sqlite_parent(url: str) -> None:
    """SQLite creates the file but not its folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def make_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # An attribute, not sqlalchemy.url: the ini parser would choke on `%` in passwords.
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    ensure_sqlite_parent(url)
    command.upgrade(make_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(make_config(url), revision)


def current(url: str) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def revision(url: str, message: str) -> None:
    command.revision(make_config(url), message=message, autogenerate=True)
