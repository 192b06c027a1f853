"""Applying the state machine to rows: guarded updates that also write the event log.

Every status change in jobchain goes through :func:`apply`, inside the caller's
transaction, so the change and its event row commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, update

from app.statuses import Status, Transition, allowed, sources, target
from app.store.tables import job_events, jobs

# Keep IN (...) lists well below SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 5000


def apply(
    conn: Connection,
    transition: Transition,
    condition: ColumnElement[bool],
    *,
    at: float,
    values: dict[str, Any] | None = None,
    only_from: Status | None = None,
    reason: str | None = None,
    returning: Sequence[Any] = (),
) -> list[Row[Any]]:
    """Move every row matching ``condition`` that is in a legal source status.

    One guarded ``UPDATE ... WHERE status = <source>`` per source status, so the event's
    ``from_status`` is exact and a row changed concurrently is simply not matched.
    Returns the rows that moved (id, attempt, plus ``returning`` columns).
    """
    froms = [only_from] if only_from is not None else sorted(sources(transition))
    to = target(transition)
    moved: list[Row[Any]] = []
    for source in froms:
        if not allowed(source, transition):
            raise ValueError(f"{transition} is not allowed from {source}")
        stmt = (
            update(jobs)
            .where(condition, jobs.c.status == source.value)
            .values(status=to.value, updated_at=at, **(values or {}))
            .returning(jobs.c.id, jobs.c.attempt, *returning)
        )
        rows = conn.execute(stmt).all()
        record_events(conn, ((r.id, r.attempt) for r in rows), source, to, at, reason or transition)
        moved.extend(rows)
    return moved


def apply_to_ids(
    conn: Connection, transition: Transition, ids: Sequence[int], **kwargs: Any
) -> list[Row[Any]]:
    """:func:`apply` to an explicit id list, in chunks."""
    moved: list[Row[Any]] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        moved.extend(apply(conn, transition, jobs.c.id.in_(chunk), **kwargs))
    return moved


def record_events(
    conn: Connection,
    job_attempts: Iterable[tuple[int, int]],
    from_status: Status | None,
    to_status: Status,
    at: float,
    reason: str,
) -> None:
    rows = [
        {
            "job_id": job_id,
            "from_status": from_status.value if from_status else None,
            "to_status": to_status.value,
            "attempt": attempt,
            "at": at,
            "reason": str(reason),
        }
        for job_id, attempt in job_attempts
    ]
    if rows:
        conn.execute(_INSERT_EVENT, rows)


_INSERT_EVENT = insert(job_events)
