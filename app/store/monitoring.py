"""The reads behind /metrics and alerts: current counts (cheap, index-backed) and the event
log read forward from an id, so nothing scans the whole jobs table per scrape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from app.domain.statuses import Status
from app.store.automation_tables import asset_events, automation_ticks
from app.store.notification_tables import notification_deliveries
from app.store.tables import assets, job_events, jobs, joins, models, schedule_fires, schedules

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


def last_asset_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(asset_events.c.id), 0))).scalar_one())


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


def asset_events_after(
    conn: Connection, after: int, limit: int, also: list[int] | None = None
) -> Sequence[Any]:
    """Asset events (automation's LATE, RECOVERED, HELD, ...) with id > ``after`` (plus
    ``also``), with their asset's and model's names."""
    ids = asset_events.c.id > after
    if also:
        ids = ids | asset_events.c.id.in_(also)
    return conn.execute(
        select(
            asset_events.c.id,
            asset_events.c.kind,
            asset_events.c.at,
            asset_events.c.message,
            asset_events.c.model_id,
            asset_events.c.asset_id,
            assets.c.name.label("asset"),
            models.c.name.label("model"),
        )
        .select_from(
            asset_events.join(assets, assets.c.id == asset_events.c.asset_id).join(
                models, models.c.id == assets.c.model_id
            )
        )
        .where(ids)
        .order_by(asset_events.c.id)
        .limit(limit)
    ).all()


def model_names(conn: Connection) -> dict[int, str]:
    """Every model's name by id (a small table: models, not assets)."""
    return {int(i): str(name) for i, name in conn.execute(select(models.c.id, models.c.name))}


def assets_late_and_held(conn: Connection) -> tuple[dict[int, int], dict[int, int]]:
    """Late assets and held assets by model id, each counted on an index alone
    (``ix_assets_late``, ``ix_assets_held``: model and time, never the table's rows)."""
    found = []
    for column in (assets.c.late_since, assets.c.held_at):
        rows = conn.execute(
            select(assets.c.model_id, func.count())
            .where(column.is_not(None))
            .group_by(assets.c.model_id)
        )
        found.append({int(model_id): int(count) for model_id, count in rows})
    return found[0], found[1]


def latest_ticks(conn: Connection) -> dict[int, tuple[float, float]]:
    """Each model's latest automation tick: (started_at, duration_ms). One index search per
    model (the newest id on ``ix_automation_ticks_model``), never a scan of the ticks."""
    ticks = automation_ticks.alias("model_ticks")
    newest = (
        select(func.max(ticks.c.id))
        .where(ticks.c.model_id == models.c.id)
        .correlate(models)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(models.c.id, automation_ticks.c.started_at, automation_ticks.c.duration_ms)
        .select_from(models)
        .join(automation_ticks, automation_ticks.c.id == newest)
    )
    return {int(r.id): (float(r.started_at), float(r.duration_ms)) for r in rows}
