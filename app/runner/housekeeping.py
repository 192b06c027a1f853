"""Periodic maintenance with APScheduler, off the critical path: leases, join deadlines,
expired Idempotency-Keys and the retention of finished chains."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

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


def start_housekeeping(
    db: Database,
    interval_seconds: float,
    idempotency_ttl_seconds: float = Settings.idempotency_ttl_seconds,
    retention_days: float = Settings.retention_days,
) -> BackgroundScheduler:
    """Reap expired leases now and then every ``interval_seconds``; purge what is past its
    time every minute (``retention_days`` 0 keeps finished chains forever)."""
    reap(db)
    scheduler = BackgroundScheduler(daemon=True)
    every(scheduler, interval_seconds, reap, db)
    every(scheduler, PURGE_INTERVAL_SECONDS, purge_idempotency_keys, db, idempotency_ttl_seconds)
    if retention_days > 0:
        every(scheduler, RETENTION_INTERVAL_SECONDS, purge_finished_chains, db, retention_days)
    scheduler.start()
    return scheduler


def every(scheduler: BackgroundScheduler, seconds: float, task: Any, *args: Any) -> None:
    """Run ``task(*args)`` every ``seconds``; a run still going when the next is due is not
    doubled, and runs missed while the process was busy collapse into one."""
    scheduler.add_job(
        task,
        "interval",
        args=list(args),
        seconds=seconds,
        id=task.__name__,
        max_instances=1,
        coalesce=True,
    )
