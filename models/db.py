"""One declarative base, reusable column types, and the engine/session factory.

Every durable thing lives in the database named by DATABASE_URL (a SQLite file by
default, PostgreSQL in production), so any number of workers and hosts can share it.
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import itertools
import re
import select
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from sqlalchemy import JSON, DateTime, MetaData, String, Uuid, create_engine, event, exc, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from models import metrics, outage


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on every backend: stored as UTC, read back as UTC.

    SQLite keeps no offset, so naive values read from it are UTC by construction.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware one")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        list[str]: JSONType,
        uuid.UUID: Uuid(),
    }


# Reusable column shapes.
UUIDPk = Annotated[uuid.UUID, mapped_column(primary_key=True, default=uuid.uuid4)]
CreatedAt = Annotated[dt.datetime, mapped_column(default=utcnow, nullable=False)]
Slug = Annotated[str, mapped_column(String(100), nullable=False)]
Str200 = Annotated[str, mapped_column(String(200))]


def _sqlite_pragmas(dbapi_connection, _record, busy_ms: int = 10000):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _server_spoke(dbapi_connection) -> bool:
    """Whether an idle connection has something to read: the server's shutdown notice
    or end of stream (a restart, a terminated backend), rarely a parameter report."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _ping_when_in_doubt(engine: Engine) -> None:
    """pool_pre_ping without its round trip per checkout: a pooled connection is pinged
    only when its socket shows that the server spoke while it was idle; a dead one is
    replaced before use (the pool retries the checkout on DisconnectionError). A peer
    gone without a word (a network cut) shows up only in the next query, as before
    on a connection in use."""

    @event.listens_for(engine, "checkout")
    def check(dbapi_connection, _record, _proxy):
        if not _server_spoke(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"connection lost while pooled: {error}") from error


def _answered(state: outage.DependencyState, *_event) -> None:
    # A new connection, or a committed transaction: the database answers again.
    state.up()


def _flushed(session: Session, _context) -> None:
    session.info["wrote"] = True


def _committed_writes(state: outage.DependencyState, session: Session) -> None:
    # SQLite: reads (and new connections) go on while another process holds the write
    # lock, so only a committed write says the database is back.
    if session.info.pop("wrote", False):
        state.up()


def _statement_timeout(seconds: float):
    """Sets PostgreSQL's statement_timeout on each new connection (a SET, not a startup
    option: connection poolers such as PgBouncer refuse unknown startup options)."""

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET statement_timeout = %s", (int(seconds * 1000),))
        finally:
            cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.commit()  # else the first rollback would undo the SET

    return on_connect


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 5, echo: bool = False,
                connect_timeout: float = 5, pool_timeout: float = 10, busy_timeout: float = 10,
                statement_timeout: float = 0, state: outage.DependencyState | None = None) -> Engine:
    """`state` (PostgreSQL): told the database is up whenever a new connection opens.
    `connect_timeout` (PostgreSQL): a server that does not answer fails the connection
    (and the request, 503) instead of hanging it. `pool_timeout`: how long a request
    waits for a pooled connection. `busy_timeout` (SQLite): how long a write waits for
    the file's lock. `statement_timeout` (PostgreSQL, 0 = none): the longest a statement
    may run or wait for a lock."""
    if url.startswith("sqlite"):
        busy = max(busy_timeout, 0.05)
        in_memory = make_url(url).database in (None, "", ":memory:")  # one connection, no queue
        engine = create_engine(
            url, echo=echo, **({} if in_memory else {"pool_timeout": pool_timeout}),
            connect_args={"check_same_thread": False, "timeout": busy},
        )
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=int(busy * 1000)))
        return engine
    engine = create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout,
        # libpq counts whole seconds, at least 2.
        connect_args={"connect_timeout": max(2, round(connect_timeout))},
    )
    _ping_when_in_doubt(engine)
    if statement_timeout:
        event.listen(engine, "connect", _statement_timeout(statement_timeout))
    if state is not None:
        event.listen(engine, "connect", functools.partial(_answered, state))
    return engine


# The health probe's own pool (Database.prober): at most this many connections.
PROBE_CONNECTIONS = 3


def _count_pool_use(engine: Engine) -> None:
    """The pool's connections in use and beyond its size, as gauges (models/metrics.py)."""
    pool = engine.pool
    overflow = getattr(pool, "overflow", None)

    def changed(delta: int) -> None:
        metrics.DB_POOL_CHECKED_OUT.inc(delta)
        if overflow is not None:
            metrics.DB_POOL_OVERFLOW.set(max(0, overflow()))

    event.listen(engine, "checkout", lambda *_: changed(1))
    event.listen(engine, "checkin", lambda *_: changed(-1))


class Database:
    """An engine and its session factory; one `Database` per process and URL, with one
    pool: at most `pool_size + max_overflow` connections, plus the health probe's."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 5, echo: bool = False,
                 connect_timeout: float = 5, pool_timeout: float = 10, busy_timeout: float = 10,
                 statement_timeout: float = 0):
        self.url = url
        # Up or down as this database's own requests and probes see it: logged once per
        # transition, reported by health and metrics.
        self.outage = outage.DependencyState("database")
        self.pool_size, self.max_overflow = pool_size, max_overflow
        timeouts = {"connect_timeout": connect_timeout, "pool_timeout": pool_timeout,
                    "busy_timeout": busy_timeout, "statement_timeout": statement_timeout}
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow, echo=echo,
                                  state=self.outage, **timeouts)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        if self.is_sqlite:
            event.listen(self.Session, "after_flush", _flushed)
            event.listen(self.Session, "after_rollback", lambda session: session.info.pop("wrote", None))
            event.listen(self.Session, "after_commit", functools.partial(_committed_writes, self.outage))
        else:
            event.listen(self.Session, "after_commit", functools.partial(_answered, self.outage))
        _count_pool_use(self.engine)
        # For single reads outside a unit of work (every request's key lookup): on
        # PostgreSQL the same pool's connections in autocommit while checked out, so a
        # read is one round trip (no BEGIN and ROLLBACK around it); SQLAlchemy resets
        # them on return. SQLite: the engine itself.
        self.reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def connections_at_most(self) -> int:
        """The most connections this process opens to PostgreSQL: the pool, its
        overflow, and the health probe's."""
        return self.pool_size + self.max_overflow + PROBE_CONNECTIONS

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One session and one transaction: commit on success, roll back on error."""
        session = self.Session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @functools.cached_property
    def prober(self) -> Engine:
        """The health probe's own connection: it never waits for the requests' pool, and
        a server that does not answer fails it within about a second (PostgreSQL: connect
        and statement timeouts; SQLite: a short busy timeout)."""
        if self.is_sqlite:
            return make_engine(self.url, pool_timeout=0.5, busy_timeout=0.5)
        engine = create_engine(
            self.url, pool_size=1, max_overflow=PROBE_CONNECTIONS - 1, pool_timeout=0.5, pool_pre_ping=True,
            isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2},
        )
        event.listen(engine, "connect", _statement_timeout(0.9))
        event.listen(engine, "connect", functools.partial(_answered, self.outage))
        return engine

    def ping(self) -> None:
        """One round trip that reads the database (SQLite: its schema page), on the probe's
        connection; raises when the database cannot answer."""
        with self.prober.connect() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM sqlite_master" if self.is_sqlite else "SELECT 1")

    def connection_budget_warning(self, processes: int) -> str | None:
        """A warning when `processes` such processes could open more connections than
        PostgreSQL accepts (max_connections less those reserved for superusers); None
        when they fit, on SQLite, or when the server cannot be asked."""
        if self.is_sqlite:
            return None
        try:
            with self.prober.connect() as connection:
                most = int(connection.exec_driver_sql("SHOW max_connections").scalar())
                reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar())
        except exc.SQLAlchemyError:
            return None
        need = processes * self.connections_at_most
        if need <= most - reserved:
            return None
        return (f"{processes} processes x {self.connections_at_most} connections (DB_POOL_SIZE {self.pool_size} + "
                f"DB_MAX_OVERFLOW {self.max_overflow} + {PROBE_CONNECTIONS} for the health probe) = {need} may exceed "
                f"PostgreSQL's max_connections {most} ({reserved} reserved for superusers), on this host alone: lower "
                f"WEB_CONCURRENCY, DB_POOL_SIZE or DB_MAX_OVERFLOW, or raise max_connections, or pool with PgBouncer "
                f"in session mode")

    def dispose(self) -> None:
        self.engine.dispose()
        if "prober" in self.__dict__:
            self.prober.dispose()


def upsert_insert(dialect: str, table):
    """An INSERT of `table` that takes ON CONFLICT (DO NOTHING / DO UPDATE) on the two
    databases we run on: PostgreSQL, and SQLite elsewhere."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class Prepared:
    """A statement every request runs, which PostgreSQL parses and plans once per
    connection (PREPARE, then EXECUTE by name; planning its joins cost more than running
    them). Its values go to the driver as they are and rows come back as the driver
    reads them, without SQLAlchemy's type processing: for statements whose parameters
    and columns need none. Other databases run the statement as usual. Needs session-level
    pooling (a transaction-pooling PgBouncer would lose the prepared statements)."""

    _numbers = itertools.count(1)

    def __init__(self, statement):
        self.statement = statement
        self.name = f"hot_{next(self._numbers)}"
        columns = (statement.selected_columns.keys() if statement.is_select
                   else [c["name"] for c in statement.returning_column_descriptions])
        self.row = collections.namedtuple("Row", columns)

    @functools.cached_property
    def _sql(self) -> tuple[str, str, list[str]]:
        """(PREPARE, EXECUTE with psycopg2 placeholders, the parameters in order)."""
        names: list[str] = []

        def positional(match: re.Match) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        text = str(self.statement.compile(dialect=pg_psycopg2.dialect()))
        prepare = f"PREPARE {self.name} AS " + re.sub(r"%\((\w+)\)s", positional, text).replace("%%", "%")
        return prepare, f"EXECUTE {self.name}" + (f"({', '.join(['%s'] * len(names))})" if names else ""), names

    def rows(self, connection: Session | Connection, params: dict) -> list:
        """All rows, in the transaction of `connection` (a Session or a Connection)."""
        if isinstance(connection, Session):
            if connection.autoflush:  # as Session.execute would
                connection.flush()
            connection = connection.connection()
        if connection.dialect.name != "postgresql":
            return connection.execute(self.statement, params).all()
        prepare, execute, names = self._sql
        prepared = connection.info.setdefault("prepared", set())  # per DBAPI connection
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            if self.name not in prepared:
                cursor.execute(prepare)
                prepared.add(self.name)
            cursor.execute(execute, [params[name] for name in names])
            return list(map(self.row._make, cursor.fetchall()))
        finally:
            cursor.close()
