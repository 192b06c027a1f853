"""Connections and transactions: the engine, retries, and event-driven wake-ups.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so they take the write lock up
front (a deferred transaction that upgrades to a write can fail with SQLITE_BUSY_SNAPSHOT,
which busy_timeout does not cure). On PostgreSQL they are ordinary READ COMMITTED
transactions whose guarded updates re-check their WHERE clause after a concurrent write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.store.dialect import is_transient, postgres_engine, sqlite_engine, unpinged
from app.store.wakeups import PgWakeups

T = TypeVar("T")

log = logging.getLogger("jobchain.database")

# Execution option marking a connection that writes (BEGIN IMMEDIATE on SQLite).
WRITE_TRANSACTION = "jobchain_write"
_BACKOFF_FIRST, _BACKOFF_MAX = 0.01, 1.0
# How long a database call may keep retrying in this thread (None: the Database's default).
_WAIT: ContextVar[float | None] = ContextVar("jobchain_db_wait", default=None)


class DatabaseUnavailable(Exception):
    """The database stayed locked or unreachable; callers answer 503, not 500."""


def now() -> float:
    """Wall-clock UTC epoch seconds, the unit of every stored time."""
    return time.time()


def limit_wait(seconds: float) -> Token[float | None]:
    """Bound how long database calls of this thread (e.g. an API request) keep retrying."""
    return _WAIT.set(seconds)


def reset_wait(token: Token[float | None]) -> None:
    _WAIT.reset(token)


class Database:
    """An engine plus the transaction helpers every store module uses.

    ``wait_seconds`` bounds how long one call keeps retrying a locked or unreachable
    database (background threads; API requests set a shorter bound with ``limit_wait``).
    ``listen_notify`` enables cross-process wake-ups on PostgreSQL (app/store/wakeups.py).
    """

    def __init__(
        self,
        url: str,
        pool_size: int = 8,
        sqlite_synchronous: str = "NORMAL",
        wait_seconds: float = 60.0,
        listen_notify: bool = True,
    ) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.wait_seconds = wait_seconds
        self._dispatch_listeners: list[Callable[[int | None], None]] = []
        self._listeners_lock = threading.Lock()
        # SQLite has one writer at a time. Threads of this process queue here rather than
        # in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) and so
        # turns contention into latency. Other processes still meet busy_timeout.
        self._writer_turn: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self.engine = sqlite_engine(url, sqlite_synchronous, WRITE_TRANSACTION)
        else:
            self.engine = postgres_engine(url, pool_size)
        self.wakeups = (
            PgWakeups(self.engine, self._wake_local)
            if listen_notify and not self.is_sqlite
            else None
        )

    def dispose(self) -> None:
        if self.wakeups is not None:
            self.wakeups.stop()
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite: never blocks writers in WAL mode).

        Connecting is retried while the database is unreachable; a connection lost in the
        middle raises DatabaseUnavailable (the caller may simply ask again).
        """
        # Checking out a connection pings it and reconnects if it died.
        conn = self._retrying(self.engine.connect, self._deadline())
        try:
            with conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            if self._is_transient(exc):
                raise DatabaseUnavailable(_reason(exc)) from exc
            raise

    def write(
        self, work: Callable[[Connection], T], replay_safe: bool = False, ping: bool = True
    ) -> T:
        """Run ``work`` in one write transaction, retrying it on transient errors.

        ``work`` must be safe to run again: everything it did is rolled back before a retry.
        A connection lost during COMMIT leaves the outcome unknown; such a transaction is
        run again only if ``replay_safe`` (its guarded updates make a replay a no-op),
        otherwise the caller gets DatabaseUnavailable. ``ping=False`` skips the pooled
        connection's liveness check (a round trip on PostgreSQL): a dead connection then
        fails the transaction's first statement and the transaction runs again.
        """
        deadline = self._deadline()
        return self._retrying(lambda: self._write_once(work, replay_safe, deadline, ping), deadline)

    def _write_once(
        self, work: Callable[[Connection], T], replay_safe: bool, deadline: float, ping: bool
    ) -> T:
        committing = False
        try:
            with self._turn(deadline), self._connect(ping) as conn:
                conn = conn.execution_options(**{WRITE_TRANSACTION: True})
                with conn.begin():
                    result = work(conn)
                    committing = True
                return result
        except DBAPIError as exc:
            ambiguous = committing and not self.is_sqlite and not replay_safe
            if ambiguous and self._is_transient(exc):
                raise DatabaseUnavailable(
                    f"connection lost while committing; the change may not be saved: {_reason(exc)}"
                ) from exc
            raise

    def alone(self, statement: Callable[[Connection], T]) -> T:
        """Run ``statement``, one statement, as its own transaction (PostgreSQL: no BEGIN
        and no COMMIT round trip; the statement commits as it ends). Not retried: a
        transient error leaves its outcome unknown, and the caller decides."""
        with self._connect(False) as conn:
            return statement(conn.execution_options(isolation_level="AUTOCOMMIT"))

    def _connect(self, ping: bool) -> Connection:
        if ping:
            return self.engine.connect()
        with unpinged():
            return self.engine.connect()

    def _retrying(self, attempt: Callable[[], T], deadline: float) -> T:
        """Call ``attempt`` until it succeeds, fails for good, or ``deadline`` passes."""
        delay = _BACKOFF_FIRST
        while True:
            try:
                return attempt()
            except DBAPIError as exc:
                if not self._is_transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(_reason(exc)) from exc
                if delay >= _BACKOFF_MAX / 2:
                    log.warning("database unavailable, retrying in %.1f s: %s", delay, _reason(exc))
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def _deadline(self) -> float:
        wait = _WAIT.get()
        return time.monotonic() + (self.wait_seconds if wait is None else wait)

    def _turn(self, deadline: float) -> AbstractContextManager[Any]:
        """This process's SQLite writers queue here, but no longer than their wait allows."""
        if self._writer_turn is None:
            return nullcontext()
        if not self._writer_turn.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DatabaseUnavailable("database is locked (waited for this process's writer)")
        return _Release(self._writer_turn)

    def _is_transient(self, exc: DBAPIError) -> bool:
        return is_transient(exc, sqlite=self.is_sqlite)

    # -- event-driven dispatch -------------------------------------------------------------

    def on_dispatchable(self, listener: Callable[[int | None], None]) -> None:
        """Call ``listener(count)`` whenever a committed write made ``count`` jobs claimable
        (None: an unknown number, e.g. after missed notifications), in any process."""
        with self._listeners_lock:
            self._dispatch_listeners.append(listener)
        if self.wakeups is not None:
            self.wakeups.start()

    def notify_dispatchable(self, count: int | None = 1) -> None:
        """Called right after a commit that made ``count`` jobs claimable (None: unknown):
        wake this process's idle workers, then other processes'.

        After the commit rather than inside the transaction: the count is known only once
        the transaction's work is done, and a notification lost to a crash in between
        costs no more than any lost notification (the idle poll)."""
        self._wake_local(count)
        if self.wakeups is not None:
            self.wakeups.send(count)

    def _wake_local(self, count: int | None) -> None:
        for listener in list(self._dispatch_listeners):
            listener(count)


class _Release:
    """Releases an already acquired lock on exit."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
