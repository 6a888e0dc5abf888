"""One pool per process, and the start-up warning when the workers' pools could exceed
PostgreSQL's max_connections."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from models import migrate
from models.config import ROOT
from models.db import PROBE_CONNECTIONS, Database
from scripts.ports import free_port
from tests.conftest import TEST_DATABASE_URL, throwaway_postgres

needs_postgres = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL")


def test_sqlite_has_no_connection_budget(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'budget.db'}", pool_size=3, max_overflow=2)
    try:
        assert database.reader is database.engine
        assert database.connections_at_most == 3 + 2 + PROBE_CONNECTIONS
        assert database.connection_budget_warning(10_000) is None
    finally:
        database.dispose()


@needs_postgres
def test_key_lookups_and_units_of_work_share_one_pool():
    with throwaway_postgres("onepool") as url:
        database = Database(url, pool_size=1, max_overflow=0)
        try:
            assert database.reader.pool is database.engine.pool
            with database.reader.connect() as connection:
                reader_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                assert connection.connection.dbapi_connection.autocommit
            # The same (only) connection, back in transactional mode for the unit of work.
            with database.unit_of_work() as session:
                assert session.execute(text("SELECT pg_backend_pid()")).scalar() == reader_pid
                assert session.connection().connection.dbapi_connection.get_transaction_status() == 2  # INTRANS
        finally:
            database.dispose()


@needs_postgres
def test_the_budget_warning_names_the_settings_to_change():
    with throwaway_postgres("budget") as url:
        database = Database(url, pool_size=10, max_overflow=5)
        try:
            assert database.connection_budget_warning(1) is None
            warning = database.connection_budget_warning(1_000)
            assert "max_connections" in warning and "DB_POOL_SIZE 10" in warning and "= 18000" in warning
        finally:
            database.dispose()


@needs_postgres
def test_gunicorn_warns_at_start_up_when_its_workers_could_exhaust_postgres(tmp_path):
    with throwaway_postgres("budget") as url:
        migrate.upgrade(url)
        env = dict(os.environ, DATABASE_URL=url, BIND=f"127.0.0.1:{free_port()}", WEB_CONCURRENCY="2",
                   DB_POOL_SIZE="500", LOG_LEVEL="warning")
        env.pop("REDIS_URL", None)
        log = tmp_path / "gunicorn.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
                 "handlers.runtime.asgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while "connection budget" not in log.read_text() and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            warning = next(line for line in log.read_text().splitlines() if "connection budget" in line)
            assert "2 processes x 508 connections" in warning and "max_connections" in warning
        finally:
            process.terminate()
            process.wait(timeout=60)
