"""The objects one jobchain process shares: settings, database, job types, workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.store import schema
from app.store.database import Database
from config import Settings
from jobs import REGISTRY
from jobs.registry import Registry


class JobAborter(Protocol):
    """What the web layer may ask of this process's workers: stop a job they run."""

    def request_abort(self, job_id: int, reason: str = "cancelled") -> bool: ...


@dataclass
class Runtime:
    settings: Settings
    db: Database
    registry: Registry
    # Present when this process also runs workers (``jobchain serve``), so a cancel made
    # through its API reaches a job it runs at once instead of at the next heartbeat.
    pool: JobAborter | None = None

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        REGISTRY.load_modules(settings.job_modules)
        db = Database(
            settings.database_url,
            pool_size=settings.workers + 8,
            sqlite_synchronous=settings.sqlite_synchronous,
            wait_seconds=settings.background_db_wait_seconds,
            listen_notify=settings.listen_notify,
        )
        try:
            if settings.auto_migrate:
                schema.upgrade(db)
            else:
                schema.require_head(db)
        except Exception:
            db.dispose()
            raise
        return cls(settings=settings, db=db, registry=REGISTRY)
