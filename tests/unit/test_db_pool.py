"""Pooled PostgreSQL connections that the server closed (a restart, a terminated backend)
are replaced on checkout, before any request uses them."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from models.db import Database
from tests.conftest import TEST_DATABASE_URL, throwaway_postgres

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL")


def _terminate_backends(url: str, pids: set[int]) -> None:
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for pid in pids:  # waits until each backend is gone
            assert connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar()
    admin.dispose()


@pytest.mark.parametrize("engine_of", [lambda db: db.engine, lambda db: db.reader], ids=["engine", "reader"])
def test_connections_closed_by_the_server_are_replaced_on_checkout(engine_of):
    with throwaway_postgres("pool") as url:
        database = Database(url, pool_size=2)
        engine = engine_of(database)
        try:
            # Two pooled connections, both idle in the pool afterwards.
            first, second = engine.connect(), engine.connect()
            pids = {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in (first, second)}
            first.close(), second.close()
            _terminate_backends(url, pids)
            for _ in range(3):
                with engine.connect() as connection:
                    assert connection.execute(text("SELECT pg_backend_pid()")).scalar() not in pids
            with database.unit_of_work() as session:
                assert session.execute(text("SELECT 1")).scalar() == 1
        finally:
            database.dispose()


def test_reader_reads_without_a_transaction():
    with throwaway_postgres("pool") as url:
        database = Database(url, pool_size=1)
        try:
            with database.reader.connect() as connection:
                connection.execute(text("SELECT 1"))
                # autocommit: no transaction is open around the read
                assert connection.connection.dbapi_connection.get_transaction_status() == 0  # IDLE
        finally:
            database.dispose()
