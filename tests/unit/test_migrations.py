"""The Alembic history builds exactly the schema the models describe, both ways."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, create_engine, inspect
from sqlalchemy.pool import NullPool

from models import migrate
from models.db import Base
from models.registry import load_all


def _drift(url: str, metadata: MetaData) -> list:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _head() -> str:
    heads = ScriptDirectory.from_config(migrate.make_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migration history has several heads: {heads}"
    return heads[0]


def test_models_and_migrations_do_not_drift(fresh_database_url):
    load_all()
    migrate.upgrade(fresh_database_url)
    assert migrate.current(fresh_database_url) == _head()
    assert _drift(fresh_database_url, Base.metadata) == []


def test_drift_check_notices_a_column_without_migration(fresh_database_url):
    load_all()
    migrate.upgrade(fresh_database_url)
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["chatbots"].append_column(Column("unmigrated", String(10)))
    assert [diff[0] for diff in _drift(fresh_database_url, metadata)] == ["add_column"]


def test_downgrade_to_base_and_upgrade_again(fresh_database_url):
    load_all()
    migrate.upgrade(fresh_database_url)
    migrate.downgrade(fresh_database_url, "base")
    assert migrate.current(fresh_database_url) is None
    assert _tables(fresh_database_url) <= {"alembic_version"}
    migrate.upgrade(fresh_database_url)
    assert migrate.current(fresh_database_url) == _head()
    assert set(Base.metadata.tables) <= _tables(fresh_database_url)
    assert _drift(fresh_database_url, Base.metadata) == []


def test_upgrade_creates_the_sqlite_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing' / 'folder' / 'app.db'}"
    migrate.upgrade(url)
    assert migrate.current(url) == _head()


def test_revisions_do_not_import_application_code():
    # A revision must keep working after the models it was generated from change.
    for path in migrate.MIGRATIONS_DIR.joinpath("versions").glob("*.py"):
        source = path.read_text()
        assert "import models" not in source and "from models" not in source, path.name
