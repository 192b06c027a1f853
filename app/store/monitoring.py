"""The reads behind /metrics and alerts: current counts (cheap, index-backed) and the event
log read forward from an id, so nothing scans the whole jobs table per scrape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from app.domain.statuses import Status
from app.store.tables import (
    job_events,
    jobs,
    joins,
    notification_deliveries,
    schedule_fires,
    schedules,
)

# Statuses whose jobs are still to run; the terminal ones only grow and are not counted.
ACTIVE = (Status.WAITING_FOR_PARENT, Status.WAITING_FOR_DISPATCH, Status.PROCESSING)

_previous = job_events.alias("previous")
# The time of the event just before each one of the same job: when a claimed job became
# ready, when a finished one was claimed.
_PREVIOUS_AT = (
    select(func.max(_previous.c.at))
    .where(_previous.c.job_id == job_events.c.job_id, _previous.c.id < job_events.c.id)
    .scalar_subquery()
)
_TIMED = (Status.PROCESSING.value, Status.FINISHED.value, Status.FAILED.value)


def active_jobs(conn: Connection) -> list[tuple[str, str, int]]:
    """(status, job_type, count) of every job not yet ended."""
    return [
        (str(status), str(job_type), int(count))
        for status, job_type, count in conn.execute(
            select(jobs.c.status, jobs.c.job_type, func.count())
            .where(jobs.c.status.in_([s.value for s in ACTIVE]))
            .group_by(jobs.c.status, jobs.c.job_type)
        )
    ]


def waiting_joins(conn: Connection) -> tuple[int, float | None]:
    """How many joins wait for branches, and since when the oldest does."""
    row = conn.execute(
        select(func.count(), func.min(joins.c.created_at)).where(joins.c.state == "WAITING")
    ).one()
    return int(row[0]), row[1]


def schedule_state(conn: Connection, late_before: float) -> tuple[int, int]:
    """(enabled schedules, enabled ones whose fire time passed before ``late_before``)."""
    row = conn.execute(
        select(
            func.count(),
            func.count(case((schedules.c.next_fire_at < late_before, 1))),
        ).where(schedules.c.enabled.is_(True))
    ).one()
    return int(row[0]), int(row[1])


def pending_deliveries(conn: Connection) -> tuple[int, float | None]:
    """Notifications not yet delivered, and when the oldest of them was due."""
    row = conn.execute(
        select(func.count(), func.min(notification_deliveries.c.created_at)).where(
            notification_deliveries.c.status == "pending"
        )
    ).one()
    return int(row[0]), row[1]


def last_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(job_events.c.id), 0))).scalar_one())


def last_fire_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(schedule_fires.c.id), 0))).scalar_one())


EVENT_COLUMNS = (
    job_events.c.id,
    job_events.c.job_id,
    job_events.c.from_status,
    job_events.c.to_status,
    job_events.c.reason,
    job_events.c.attempt,
    job_events.c.at,
    jobs.c.root_id,
    jobs.c.job_type,
    jobs.c.target_object,
    jobs.c.join_id,
    jobs.c.run_after,
    jobs.c.message,
)


def events_after(
    conn: Connection, after: int, limit: int, also: list[int] | None = None
) -> Sequence[Any]:
    """Job events with id > ``after`` (plus the ids in ``also``), oldest first, with their
    job's type, target and the time of the job's previous event."""
    ids = job_events.c.id > after
    if also:
        ids = ids | job_events.c.id.in_(also)
    previous = case((job_events.c.to_status.in_(_TIMED), _PREVIOUS_AT), else_=None)
    return conn.execute(
        select(*EVENT_COLUMNS, previous.label("previous_at"))
        .select_from(job_events.join(jobs, jobs.c.id == job_events.c.job_id))
        .where(ids)
        .order_by(job_events.c.id)
        .limit(limit)
    ).all()


def fires_after(
    conn: Connection, after: int, limit: int, also: list[int] | None = None
) -> Sequence[Any]:
    """Schedule fires with id > ``after`` (plus ``also``), with their schedule's name."""
    ids = schedule_fires.c.id > after
    if also:
        ids = ids | schedule_fires.c.id.in_(also)
    return conn.execute(
        select(
            schedule_fires.c.id,
            schedule_fires.c.schedule_id,
            schedule_fires.c.fire_time,
            schedule_fires.c.fired_at,
            schedule_fires.c.root_job_id,
            schedule_fires.c.message,
            schedules.c.name.label("schedule"),
        )
        .select_from(schedule_fires.join(schedules, schedules.c.id == schedule_fires.c.schedule_id))
        .where(and_(ids))
        .order_by(schedule_fires.c.id)
        .limit(limit)
    ).all()
