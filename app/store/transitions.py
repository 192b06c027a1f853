"""Applying the state machine to rows: guarded updates that also write the event log.

Every status change in jobchain is built here from :data:`app.domain.statuses.TRANSITIONS`: the
guard (``status IN <sources>``), the new status and the event row's reason all come from
the table. The hot path prebuilds its statements with :func:`guarded_update` and logs
them with :func:`record`; everything else calls :func:`apply` inside its transaction, so a
change and its event row commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    Update,
    bindparam,
    insert,
    select,
    update,
)

from app.domain.statuses import Status, Transition, sources, target
from app.store.tables import job_events, jobs

# Keep IN (...) lists well below SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 5000


def guard(transition: Transition, only_from: Status | None = None) -> ColumnElement[bool]:
    """``status IN <sources>``: the condition every update of ``transition`` carries."""
    froms = _froms(transition, only_from)
    if len(froms) == 1:
        return jobs.c.status == froms[0].value
    return jobs.c.status.in_([s.value for s in froms])


def guarded_update(
    transition: Transition,
    condition: ColumnElement[bool],
    values: dict[str, Any],
    returning: Sequence[Any] = (),
    only_from: Status | None = None,
) -> Update:
    """``UPDATE jobs SET status = <target>, ... WHERE <condition> AND <guard> RETURNING id,
    attempt, ...``: a statement the hot path builds once and runs many times."""
    return (
        update(jobs)
        .where(condition, guard(transition, only_from))
        .values(status=target(transition).value, **values)
        .returning(jobs.c.id, jobs.c.attempt, *returning)
    )


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

    One guarded step on a locked row set: with a single source status, one ``UPDATE``
    (its guard names the status every event starts from); with several, the rows are
    locked first (``SELECT ... FOR UPDATE``) so their status cannot change between the
    read that names each event's source and the update. Returns the rows that moved
    (id, attempt, plus ``returning`` columns).
    """
    froms = _froms(transition, only_from)
    stmt = guarded_update(
        transition, condition, {"updated_at": at, **(values or {})}, returning, only_from
    )
    if len(froms) == 1:
        single = list(conn.execute(stmt).all())
        record(conn, transition, single, at, from_status=froms[0], reason=reason)
        return single
    locked = dict(
        conn.execute(
            select(jobs.c.id, jobs.c.status)
            .where(condition, guard(transition, only_from))
            .order_by(jobs.c.id)
            .with_for_update()
        ).all()
    )
    if not locked:
        return []
    moved: list[Row[Any]] = []
    ids = sorted(locked)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        moved.extend(conn.execute(stmt.where(jobs.c.id.in_(chunk))).all())
    for source in froms:
        rows = [r for r in moved if locked[r.id] == source.value]
        record(conn, transition, rows, at, from_status=source, reason=reason)
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


def record(
    conn: Connection,
    transition: Transition,
    moved: Iterable[Row[Any]],
    at: float,
    *,
    from_status: Status | None = None,
    reason: str | None = None,
) -> None:
    """The event rows of rows (id, attempt) that ``transition`` just moved."""
    froms = sources(transition)
    source = from_status if from_status is not None else _only(froms, transition)
    record_event_rows(
        conn,
        ((r.id, r.attempt) for r in moved),
        source,
        target(transition),
        at,
        reason or transition,
    )


def record_event_rows(
    conn: Connection,
    job_attempts: Iterable[tuple[int, int]],
    from_status: Status | None,
    to_status: Status,
    at: float,
    reason: str,
) -> None:
    """Event rows for a change that is not a transition of the table: a submission (no
    source status) or a note on an unchanged status (a cancel request)."""
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


def _froms(transition: Transition, only_from: Status | None) -> list[Status]:
    legal = sources(transition)
    if only_from is None:
        return sorted(legal)
    if only_from not in legal:
        raise ValueError(f"{transition} is not allowed from {only_from}")
    return [only_from]


def _only(froms: frozenset[Status], transition: Transition) -> Status:
    if len(froms) != 1:
        raise ValueError(f"{transition} has several sources; name the one the rows left")
    return next(iter(froms))


_INSERT_EVENT = insert(job_events)
# The parameter name the hot path's statements use for "now".
AT: BindParameter[Any] = bindparam("at")
