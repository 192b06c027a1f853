"""Every difference between SQLite and PostgreSQL that the store has to know about.

Engines and their per-connection settings, which errors are worth retrying, how job ids
are drawn, and the INSERT that can say ON CONFLICT. (Migrations keep their own: the
lock around them and SQLite's table rebuilds live in app/store/schema.py and the
revisions.) Everything else in the store is portable SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError

from app.domain import jsontext

# Transient failures worth retrying a whole transaction for: serialization failure,
# deadlock, and the server going away (admin/crash shutdown, not accepting connections).
_RETRYABLE_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03"}
# SQLite: how long one attempt waits in SQLite's busy handler for another process's lock;
# write() and read() retry within their overall wait, so this only sets the granularity.
_SQLITE_BUSY_MS = 500


def _json_column_text(value: Any) -> str:
    """What JSON columns store: json.dumps's text (same separators), at any depth."""
    return jsontext.dumps(value, separators=(", ", ": "))


# JSON columns (a schedule's payload is a whole job tree) without recursion.
JSON_CODEC: dict[str, Any] = {
    "json_serializer": _json_column_text,
    "json_deserializer": jsontext.loads,
}


# Whether checking out a PostgreSQL connection pings it first (see postgres_engine).
_PING_ON_CHECKOUT: ContextVar[bool] = ContextVar("jobchain_ping_on_checkout", default=True)


# psycopg turns a query's %(name)s placeholders into $n with a regular expression and keeps
# the result only for texts up to 4 KB (psycopg/_queries.py; its guard against ORM-made
# texts that never repeat). A chain's hop (app/store/hop.py, about 7 KB) was converted again
# on every execution: ~0.1 ms of CPU per hop, a tenth of it. jobchain's statements are
# fixed texts, so a longer bound is safe; the cache keeps its size and its limit on
# parameters (a long IN list is still not kept). tests/store/test_hop.py checks it holds.
STATEMENT_CACHE_BYTES = 16 * 1024


def _cache_long_statements() -> None:
    from psycopg import _queries  # the PostgreSQL driver: imported only for PostgreSQL

    bound = getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", None)
    if isinstance(bound, int) and bound < STATEMENT_CACHE_BYTES:
        _queries.MAX_CACHED_STATEMENT_LENGTH = STATEMENT_CACHE_BYTES


def postgres_engine(url: str, pool_size: int) -> Engine:
    """A pooled engine whose checkouts ping the connection first (``SELECT 1``), as
    ``pool_pre_ping`` does, except within :func:`unpinged`.

    The ping costs a round trip per transaction. The worker's hot path skips it: a
    connection that died in the pool fails its transaction's first statement (nothing
    was written), the failure invalidates the pool's connections, and ``Database.write``
    runs the transaction again on a new one.
    """
    _cache_long_statements()
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, **JSON_CODEC
    )
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["jobchain_fresh"] = True  # just connected: nothing to ping

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("jobchain_fresh", False) or not _PING_ON_CHECKOUT.get():
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_connection, None):
                # The pool drops every connection as old as this one and reconnects.
                raise InvalidatePoolError(str(err)) from err
            raise

    return engine


@contextmanager
def prepared_at_once(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, statements run in this block are prepared on their first run on
    this connection (psycopg prepares a text once it ran ``prepare_threshold`` times,
    5 by default): for a costly statement that runs rarely on each connection, such as a
    join's firing, so the server parses it once and, once it keeps a plan, plans it once."""
    driver: Any = conn.connection.driver_connection
    threshold = getattr(driver, "prepare_threshold", None)
    if threshold is None:  # SQLite, or a driver that prepares nothing
        yield
        return
    driver.prepare_threshold = 0
    try:
        yield
    finally:
        driver.prepare_threshold = threshold


@contextmanager
def unpinged() -> Iterator[None]:
    """Connections checked out in this block are not pinged first (see postgres_engine)."""
    token = _PING_ON_CHECKOUT.set(False)
    try:
        yield
    finally:
        _PING_ON_CHECKOUT.reset(token)


def is_transient(exc: DBAPIError, *, sqlite: bool) -> bool:
    """Whether running the whole transaction again may succeed."""
    if sqlite:
        return "locked" in str(exc.orig) or "busy" in str(exc.orig)
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:  # raised by the client library: connecting or connection lost
        return isinstance(exc, OperationalError)
    return sqlstate in _RETRYABLE_SQLSTATES or sqlstate.startswith("08")


def insert_ignoring_conflicts(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING (the generic one has not).

    The dialect's module is imported here, not at import: the engine loads its own dialect,
    so a process on SQLite never loads PostgreSQL's (~2 MiB)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


_SQLITE_TOP_JOB_ID = text(
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),"
    " coalesce((SELECT max(id) FROM jobs), 0))"
)


def allocate_job_ids(conn: Connection, count: int) -> list[int]:
    """Reserve ``count`` new job ids inside a write transaction.

    PostgreSQL draws them from the id sequence; on SQLite the write transaction holds the
    database's only write lock, so the ids above the highest ever issued are ours. That is
    AUTOINCREMENT's counter in sqlite_sequence, not max(id): retention may have deleted the
    newest jobs, and their ids must not come back. Inserting the ids moves the counter on.
    """
    if conn.dialect.name == "sqlite":
        top = conn.execute(_SQLITE_TOP_JOB_ID).scalar_one()
        return list(range(top + 1, top + 1 + count))
    drawn = conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, :n)"),
        {"n": count},
    )
    return sorted(drawn.scalars())


def sqlite_engine(url: str, synchronous: str, write_option: str) -> Engine:
    """SQLite in WAL mode; connections marked ``write_option`` begin IMMEDIATE."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_size=16, max_overflow=16, pool_timeout=60, **JSON_CODEC)
    mode = synchronous.upper()
    if mode not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"invalid sqlite_synchronous {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={mode}")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(write_option, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class DriverConnection:
    """A pooled connection's driver connection in autocommit mode, for one-statement reads
    on a hot path: no SQLAlchemy transaction, no pool checkout per call. SQLite's
    connections are autocommit already (BEGIN is issued by jobchain); a PostgreSQL one is
    switched, and switched back before it returns to the pool."""

    def __init__(self, engine: Engine):
        self._pooled = engine.raw_connection()
        driver = self._pooled.driver_connection
        if driver is None:
            raise RuntimeError("the pool returned a connection without a driver connection")
        self._driver: Any = driver
        self._postgres = engine.dialect.name == "postgresql"
        if self._postgres:
            self._driver.autocommit = True

    def fetch_all(
        self, sql: str, positions: Sequence[str] | None, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run compiled ``sql`` with ``params`` (ordered by ``positions`` for a positional
        paramstyle); every row."""
        args: Any = [params[name] for name in positions] if positions else dict(params)
        cursor = self._driver.cursor()
        try:
            cursor.execute(sql, args)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def close(self) -> None:
        try:
            if self._postgres:
                self._driver.autocommit = False
        finally:
            self._pooled.close()
