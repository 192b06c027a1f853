"""Connections and transactions: the only place that knows which database engine runs.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so they take the write lock up
front (a deferred transaction that upgrades to a write can fail with SQLITE_BUSY_SNAPSHOT,
which busy_timeout does not cure). On PostgreSQL they are ordinary READ COMMITTED
transactions whose guarded updates re-check their WHERE clause after a concurrent write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

T = TypeVar("T")

_WRITE = "jobchain_write"
# Transient failures worth retrying a whole transaction for.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock
_MAX_TRIES = 5


class DatabaseUnavailable(Exception):
    """The database stayed locked or unreachable; callers answer 503, not 500."""


def now() -> float:
    """Wall-clock UTC epoch seconds, the unit of every stored time."""
    return time.time()


class Database:
    """An engine plus the transaction helpers every store module uses."""

    def __init__(self, url: str, pool_size: int = 8, sqlite_synchronous: str = "NORMAL") -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._dispatch_listeners: list[Callable[[int], None]] = []
        self._listeners_lock = threading.Lock()
        # SQLite has one writer at a time. Threads of this process queue here rather than
        # in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) and so
        # turns contention into latency. Other processes still meet busy_timeout.
        self._writer_turn: AbstractContextManager[Any] = (
            threading.Lock() if parsed.get_backend_name() == "sqlite" else nullcontext()
        )
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, sqlite_synchronous)
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (app/store/schema.py)."""
        from app.store.schema import upgrade  # schema.py builds on this module

        upgrade(self)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite: never blocks writers in WAL mode)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, retrying it on transient lock errors.

        ``work`` must be safe to run again: everything it did is rolled back before a retry.
        """
        for attempt in range(1, _MAX_TRIES + 1):
            try:
                with self._writer_turn, self.engine.connect() as conn:
                    conn = conn.execution_options(**{_WRITE: True})
                    with conn.begin():
                        return work(conn)
            except (OperationalError, DBAPIError) as exc:
                if not self._is_transient(exc) or attempt == _MAX_TRIES:
                    if self._is_transient(exc):
                        raise DatabaseUnavailable(str(exc.orig)) from exc
                    raise
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _is_transient(self, exc: DBAPIError) -> bool:
        if self.is_sqlite:
            return "locked" in str(exc.orig) or "busy" in str(exc.orig)
        return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES

    # -- event-driven dispatch -------------------------------------------------------------

    def on_dispatchable(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(count)`` whenever a committed write made ``count`` jobs claimable."""
        with self._listeners_lock:
            self._dispatch_listeners.append(listener)

    def notify_dispatchable(self, count: int = 1) -> None:
        for listener in list(self._dispatch_listeners):
            listener(count)


def allocate_job_ids(conn: Connection, count: int) -> list[int]:
    """Reserve ``count`` new job ids inside a write transaction.

    PostgreSQL draws them from the id sequence; on SQLite the write transaction holds the
    database's only write lock, so the ids above the current maximum are ours.
    """
    if conn.dialect.name == "sqlite":
        top = conn.execute(text("SELECT coalesce(max(id), 0) FROM jobs")).scalar_one()
        return list(range(top + 1, top + 1 + count))
    drawn = conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, :n)"),
        {"n": count},
    )
    return sorted(drawn.scalars())


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_size=16, max_overflow=16, pool_timeout=60)
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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
