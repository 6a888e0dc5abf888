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


def test_unique_positions_migration_renumbers_shared_positions(fresh_database_url):
    """Before 3fec93147cef concurrent turns could share a `seq`: the upgrade renumbers
    them in stored order and starts each conversation's counter after its last message."""
    import datetime as dt
    import uuid

    from sqlalchemy import Integer, Table, Uuid, select

    from models import alpinechat
    from models.db import Database, UTCDateTime

    migrate.upgrade(fresh_database_url, "4244f0c264e2")
    database = Database(fresh_database_url)
    with database.unit_of_work() as s:  # tenants and chatbots are as they were then
        bot = alpinechat.create_chatbot(s, alpinechat.create_tenant(s, "t", "a@example.com"), "b", "B")
    database.dispose()
    old = MetaData()  # the columns this test writes and reads, as they are typed then and now
    conversations = Table("conversations", old, Column("id", Uuid), Column("chatbot_id", Uuid),
                          Column("session_id", String), Column("created_at", UTCDateTime),
                          Column("updated_at", UTCDateTime), Column("last_seq", Integer))
    messages = Table("messages", old, Column("id", Uuid), Column("conversation_id", Uuid), Column("seq", Integer),
                     Column("role", String), Column("content", String), Column("created_at", UTCDateTime))
    shared, clean = uuid.uuid4(), uuid.uuid4()
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    engine = create_engine(fresh_database_url, poolclass=NullPool)
    try:
        with engine.begin() as c:
            for conversation in (shared, clean):
                c.execute(conversations.insert().values(id=conversation, chatbot_id=bot.id,
                                                        session_id=str(conversation),
                                                        created_at=now, updated_at=now))
            rows = [(shared, 1), (shared, 2), (shared, 2), (shared, 3), (clean, 1), (clean, 5)]
            for second, (conversation, seq) in enumerate(rows):
                c.execute(messages.insert().values(id=uuid.uuid4(), conversation_id=conversation, seq=seq, role="user",
                                                   content=f"m{second}", created_at=now + dt.timedelta(seconds=second)))
        migrate.upgrade(fresh_database_url)
        with engine.connect() as c:
            def positions(conversation):
                return [tuple(r) for r in c.execute(select(messages.c.content, messages.c.seq).where(
                    messages.c.conversation_id == conversation).order_by(messages.c.seq))]

            def last_seq(conversation):
                return c.execute(select(conversations.c.last_seq).where(conversations.c.id == conversation)).scalar()

            assert positions(shared) == [("m0", 1), ("m1", 2), ("m2", 3), ("m3", 4)]
            assert positions(clean) == [("m4", 1), ("m5", 5)]  # no shared position: untouched
            assert (last_seq(shared), last_seq(clean)) == (4, 5)
    finally:
        engine.dispose()
