"""Periodic maintenance, off the critical path: leases, join deadlines, expired
Idempotency-Keys and the retention of finished chains.

Each task runs on a daemon thread of its own (:class:`Timers`), so a long retention purge
never holds back the reaper. This was APScheduler's BackgroundScheduler with interval jobs
(``max_instances=1``, ``coalesce=True``); a thread with a timed wait does the same job
without loading APScheduler's scheduler, executors and job stores into every process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from app.store import external, idempotency, joins, recovery, retention
from app.store.database import Database
from config import Settings

log = logging.getLogger("jobchain.housekeeping")

# Expired Idempotency-Keys already do not count; purging them only bounds the table.
PURGE_INTERVAL_SECONDS = 60.0
# Finished chains past the retention period are deleted this often (in small batches).
RETENTION_INTERVAL_SECONDS = 60.0
DAY_SECONDS = 86_400.0


def reap(db: Database) -> None:
    """Recover jobs whose worker vanished, and fail joins past their deadline."""
    recovered = recovery.reap_expired_leases(db)
    if recovered:
        log.warning("recovered %d job(s) with expired leases", recovered)
    expired = joins.expire(db)
    if expired:
        log.warning("%d join(s) timed out", expired)
    cancelled = external.end_cancelled(db)
    if cancelled:
        log.info("cancelled %d job(s) waiting for a callback", cancelled)


def purge_idempotency_keys(db: Database, ttl_seconds: float) -> None:
    """Forget Idempotency-Keys older than ``ttl_seconds``."""
    purged = idempotency.purge_expired(db, ttl_seconds)
    if purged:
        log.info("purged %d expired idempotency key(s)", purged)


def purge_finished_chains(db: Database, retention_days: float) -> None:
    """Delete finished chains that ended more than ``retention_days`` ago, and automation
    rows as old."""
    chains, deleted = retention.purge_finished(db, retention_days * DAY_SECONDS)
    if chains:
        log.info("retention: deleted %d finished chain(s), %d job(s)", chains, deleted)
    rows = retention.purge_automation(db, retention_days * DAY_SECONDS)
    if rows:
        log.info("retention: deleted %d automation tick, evaluation and event row(s)", rows)


class Timers:
    """Tasks run every so many seconds, each on a daemon thread of its own.

    A task's runs never overlap (its thread runs one at a time), and runs that came due while
    the previous one was still going collapse into one: the next run is at the next multiple
    of the interval after the previous run ends. The first run is one interval after
    :meth:`start`. A task that raises is logged and runs again at its next time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stopping = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self._threads)

    def every(self, seconds: float, task: Callable[..., Any], *args: Any) -> None:
        name = task.__name__
        if name in self._threads:
            raise ValueError(f"task {name!r} is scheduled already")
        self._threads[name] = threading.Thread(
            target=self._run,
            args=(seconds, task, args),
            name=f"jobchain-{name}",
            daemon=True,
        )

    def start(self) -> Timers:
        for thread in self._threads.values():
            thread.start()
        return self

    def shutdown(self, wait: bool = True) -> None:
        """No further runs; ``wait`` for the ones going to end."""
        self._stopping.set()
        if wait:
            for thread in self._threads.values():
                if thread.is_alive() and thread is not threading.current_thread():
                    thread.join()

    def _run(self, seconds: float, task: Callable[..., Any], args: tuple[Any, ...]) -> None:
        started = self._clock()
        due = started + seconds
        while not self._stopping.wait(max(0.0, due - self._clock())):
            try:
                task(*args)
            except Exception:
                log.exception("housekeeping task %s failed", task.__name__)
            # Past due times are skipped, not caught up: one run, then the next slot.
            missed = (self._clock() - started) // seconds
            due = started + (missed + 1) * seconds


def start_housekeeping(
    db: Database,
    interval_seconds: float,
    idempotency_ttl_seconds: float = Settings.idempotency_ttl_seconds,
    retention_days: float = Settings.retention_days,
) -> Timers:
    """Reap expired leases now and then every ``interval_seconds``; purge what is past its
    time every minute (``retention_days`` 0 keeps finished chains forever)."""
    reap(db)
    timers = Timers()
    timers.every(interval_seconds, reap, db)
    timers.every(PURGE_INTERVAL_SECONDS, purge_idempotency_keys, db, idempotency_ttl_seconds)
    if retention_days > 0:
        timers.every(RETENTION_INTERVAL_SECONDS, purge_finished_chains, db, retention_days)
    return timers.start()
