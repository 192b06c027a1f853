"""Reading a scenario's progress from its database while faults are being injected."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from app.domain.statuses import TERMINAL, Status
from app.store.tables import job_events, jobs, join_arrivals, joins

TERMINAL_VALUES = [status.value for status in TERMINAL]


class Probe:
    """Progress queries on the scenario's database; None when the database does not answer
    (its connections may be being terminated): callers poll again."""

    def __init__(self, url: str):
        self.engine = create_engine(url, pool_pre_ping=True, pool_size=2)

    def close(self) -> None:
        self.engine.dispose()

    def _scalar(self, query: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).scalar()
        except SQLAlchemyError:
            return None

    def unfinished(self) -> int | None:
        """Jobs not yet terminal."""
        value = self._scalar(
            select(func.count()).select_from(jobs).where(jobs.c.status.not_in(TERMINAL_VALUES))
        )
        return None if value is None else int(value)

    def drained(self, expected_jobs: int) -> bool:
        """All ``expected_jobs`` stored and terminal."""
        total = self._scalar(select(func.count()).select_from(jobs))
        return total == expected_jobs and self.unfinished() == 0

    def held_by(self, pid: int) -> int:
        """Jobs PROCESSING under a lease of the worker process ``pid``."""
        value = self._scalar(
            select(func.count())
            .select_from(jobs)
            .where(
                jobs.c.status == Status.PROCESSING.value,
                jobs.c.lease_owner.like(f"%:{pid}:%"),
            )
        )
        return int(value or 0)

    def status(self, target_object: str) -> str | None:
        value = self._scalar(select(jobs.c.status).where(jobs.c.target_object == target_object))
        return None if value is None else str(value)

    def snapshot(self) -> tuple[Any, ...]:
        """Every job row, event, join and arrival: to show that something changed nothing."""
        with self.engine.connect() as conn:
            return tuple(
                tuple(
                    tuple(row)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                )
                for table in (jobs, job_events, joins, join_arrivals)
            )
