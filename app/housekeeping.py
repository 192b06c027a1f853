"""Periodic maintenance with APScheduler, off the critical path: leases and join deadlines."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from app.store import joins, lifecycle
from app.store.database import Database

log = logging.getLogger("jobchain.housekeeping")


def reap(db: Database) -> None:
    """Recover jobs whose worker vanished, and fail joins past their deadline."""
    recovered = lifecycle.reap_expired_leases(db)
    if recovered:
        log.warning("recovered %d job(s) with expired leases", recovered)
    expired = joins.expire(db)
    if expired:
        log.warning("%d join(s) timed out", expired)


def start_housekeeping(db: Database, interval_seconds: float) -> BackgroundScheduler:
    """Reap expired leases now and then every ``interval_seconds``."""
    reap(db)
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        reap,
        "interval",
        args=[db],
        seconds=interval_seconds,
        id="reap-expired-leases",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
