"""models/outage.py: which failures are outages, one log line per transition, and each
contract's x-unavailable naming a code it documents."""
from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy import create_engine, exc, text

from handlers.runtime.specs import load_contracts
from models import outage


def _raised(engine_url: str, statement: str = "SELECT 1", **kwargs) -> BaseException:
    engine = create_engine(engine_url, **kwargs)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    except Exception as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("no failure")


def test_refused_postgresql_connection_is_an_outage():
    error = _raised("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    assert "refused" in outage.database_outage(error).lower()


def test_a_wrapped_outage_is_found_in_the_chain():
    try:
        try:
            raise _raised("postgresql+psycopg2://nobody@127.0.0.1:1/none")
        except Exception as cause:
            raise RuntimeError("release failed too") from cause
    except RuntimeError as error:
        assert outage.database_outage(error)


def test_sqlite_lock_is_an_outage_but_a_bad_statement_is_not(tmp_path):
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = _raised(f"sqlite:///{path}", "INSERT INTO t VALUES (1)", connect_args={"timeout": 0.05})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in outage.database_outage(locked)
    assert outage.database_outage(_raised(f"sqlite:///{path}", "SELECT nope FROM t")) is None
    assert outage.database_outage(exc.TimeoutError("QueuePool limit reached"))
    assert outage.database_outage(ValueError("x")) is None


def test_transitions_are_logged_once_each(caplog):
    state = outage.DependencyState("thing")
    caplog.set_level(logging.INFO, logger="outage")
    for _ in range(5):
        state.down("refused")
    for _ in range(5):
        state.up()
    assert [r.getMessage().split(":")[0].split(" after")[0] for r in caplog.records] == [
        "thing is down", "thing is back"]


@pytest.mark.parametrize("api", ["wepeople", "alpinechat"])
def test_x_unavailable_names_a_documented_503_code(api):
    spec = getattr(load_contracts(), api)
    declared = spec.source["x-unavailable"]
    assert declared["status"] == 503
    error = spec.schema("Error")["properties"]["error"]
    codes = error["properties"]["code"] if api == "wepeople" else error
    assert declared["code"] in codes["x-codes"]
    if api == "wepeople":
        assert declared["code"] in codes["enum"] and "503" in codes["x-codes"][declared["code"]]["doc"]
