"""What the alert matcher reads besides the event log: its cursors (locked, so one process
at a time matches a stretch of events), how chains and joins ended, and which schedule
started a chain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, case, func, select, update

from app.domain.read_cursor import ReadCursor
from app.domain.statuses import Status
from app.store.dialect import insert_ignoring_conflicts
from app.store.monitoring import ACTIVE
from app.store.notification_tables import notification_cursors
from app.store.tables import jobs, joins, schedule_fires, schedules

CHUNK = 1000


def lock_cursor(conn: Connection, source: str, start_at: int) -> ReadCursor:
    """The cursor of ``source``, locked until the transaction ends; a new one starts at
    ``start_at`` (events before the first matcher ran are history, not news)."""
    conn.execute(
        insert_ignoring_conflicts(conn, notification_cursors)
        .values(source=source, last_id=start_at, gaps=[], updated_at=0.0)
        .on_conflict_do_nothing(index_elements=["source"])
    )
    row = conn.execute(
        select(notification_cursors.c.last_id, notification_cursors.c.gaps)
        .where(notification_cursors.c.source == source)
        .with_for_update()
    ).one()
    return ReadCursor.from_json(int(row.last_id), row.gaps)


def peek_cursor(conn: Connection, source: str) -> ReadCursor | None:
    row = conn.execute(
        select(notification_cursors.c.last_id, notification_cursors.c.gaps).where(
            notification_cursors.c.source == source
        )
    ).first()
    return ReadCursor.from_json(int(row.last_id), row.gaps) if row else None


def save_cursor(conn: Connection, source: str, cursor: ReadCursor, at: float) -> None:
    conn.execute(
        update(notification_cursors)
        .where(notification_cursors.c.source == source)
        .values(last_id=cursor.last_id, gaps=cursor.to_json(), updated_at=at)
    )


def chains(conn: Connection, roots: Iterable[int]) -> dict[int, Any]:
    """For each root: jobs still to run, failed jobs, attempts in all (changes on a retry),
    and the root's own row (type, target)."""
    found: dict[int, Any] = {}
    ids = sorted(set(roots))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = conn.execute(
            select(
                jobs.c.root_id,
                func.count(case((jobs.c.status.in_([s.value for s in ACTIVE]), 1))).label("active"),
                func.count(case((jobs.c.status == Status.FAILED.value, 1))).label("failed"),
                func.count().label("total"),
                func.sum(jobs.c.attempt).label("attempts"),
            )
            .where(jobs.c.root_id.in_(chunk))
            .group_by(jobs.c.root_id)
        )
        for row in rows:
            found[int(row.root_id)] = row
    return found


def roots(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    """The root jobs' rows (job_type, target_object) by id."""
    found: dict[int, Any] = {}
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(
            select(jobs.c.id, jobs.c.job_type, jobs.c.target_object, jobs.c.status).where(
                jobs.c.id.in_(ids[start : start + CHUNK])
            )
        )
        found.update({int(r.id): r for r in rows})
    return found


def join_decisions(conn: Connection, join_ids: Iterable[int]) -> dict[int, Any]:
    """Each join's state, key, decision time and message."""
    ids = sorted(set(join_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(joins.c.id, joins.c.key, joins.c.state, joins.c.decided_at, joins.c.message).where(
            joins.c.id.in_(ids)
        )
    )
    return {int(r.id): r for r in rows}


def schedules_of(conn: Connection, root_ids: Iterable[int]) -> dict[int, str]:
    """The schedule that started each chain, for the chains a schedule started."""
    ids = sorted(set(root_ids))
    found: dict[int, str] = {}
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(
            select(schedule_fires.c.root_job_id, schedules.c.name)
            .select_from(
                schedule_fires.join(schedules, schedules.c.id == schedule_fires.c.schedule_id)
            )
            .where(schedule_fires.c.root_job_id.in_(ids[start : start + CHUNK]))
        )
        found.update({int(r.root_job_id): str(r.name) for r in rows})
    return found
