"""Chaining: what a parent's final outcome does to the next jobs waiting on it.

Called inside the transaction that ended the parent, so a parent's end and the start (or
skip) of its next jobs commit together. JOIN nodes are never skipped or cancelled here:
they start whatever the parent's outcome, so every outcome reaches their join.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, case, select, update

from app.statuses import TERMINAL, Status, Transition
from app.store.tables import jobs
from app.store.transitions import apply, apply_to_ids, record_events

# A JOIN node runs no user code: its "run" is its arrival, microseconds of bookkeeping. It is
# due as of its creation, so claims (ordered by run_after, id) take it before ordinary jobs
# released since; otherwise the last arrival would wait behind every queued job (100
# parents' arrivals queued after the parents themselves cost a join ~100 job runs).
JOIN_DUE = {"run_after": jobs.c.created_at}


def release_next_jobs(
    conn: Connection, parent: Row[Any], outcome: Status, at: float, reason: str | None = None
) -> int:
    """Apply a parent's final outcome to its waiting next jobs; returns how many may start.

    FINISHED starts them all. FAILED starts those with executeOnError and skips the rest
    with their subtrees. CANCELLED (or SKIPPED) cancels (or skips) every waiting
    descendant. ``reason`` replaces the default skip message.
    """
    if outcome not in TERMINAL:
        return 0
    if outcome == Status.FINISHED:
        return release_finished(conn, [parent.id], at)
    children = jobs.c.parent_id == parent.id
    started = apply(
        conn,
        Transition.ARRIVE,
        and_(children, jobs.c.join_id.is_not(None)),
        at=at,
        values=JOIN_DUE,
    )
    if outcome == Status.FAILED:
        started += apply(
            conn,
            Transition.PARENT_FAILED,
            and_(children, jobs.c.execute_on_error.is_(True)),
            at=at,
            values={"run_after": at},
        )
        message = reason or f"skipped: job {parent.id} ({parent.target_object}) failed"
        return len(started) + block_waiting_subtree(conn, parent.id, Transition.SKIP, message, at)
    message = reason or f"cancelled: job {parent.id} was cancelled"
    transition = Transition.SKIP if outcome == Status.SKIPPED else Transition.CANCEL
    return len(started) + block_waiting_subtree(conn, parent.id, transition, message, at)


_START_CHILDREN = (
    update(jobs)
    .where(
        jobs.c.parent_id.in_(bindparam("parents", expanding=True)),
        jobs.c.status == Status.WAITING_FOR_PARENT.value,
    )
    .values(
        status=Status.WAITING_FOR_DISPATCH.value,
        run_after=case((jobs.c.join_id.is_not(None), jobs.c.created_at), else_=bindparam("at")),
        updated_at=bindparam("at"),
    )
    .returning(jobs.c.id, jobs.c.attempt)
)


def release_finished(conn: Connection, parent_ids: list[int], at: float) -> int:
    """Start every waiting next job of these FINISHED parents (one prebuilt statement,
    this is the hot path); returns how many."""
    started = conn.execute(_START_CHILDREN, {"parents": parent_ids, "at": at}).all()
    record_events(
        conn,
        ((r.id, r.attempt) for r in started),
        Status.WAITING_FOR_PARENT,
        Status.WAITING_FOR_DISPATCH,
        at,
        Transition.PARENT_FINISHED,
    )
    return len(started)


def block_waiting_subtree(
    conn: Connection, blocker_id: int, transition: Transition, message: str, at: float
) -> int:
    """Skip or cancel the not-yet-started descendants of ``blocker_id``.

    Stops at JOIN nodes, which start instead (returned count) so their join hears of the
    branch's end. The blocked jobs remember the blocker: retrying it brings them back.
    """
    blocked, joins = _waiting_descendants(conn, blocker_id)
    apply_to_ids(
        conn,
        transition,
        blocked,
        at=at,
        only_from=Status.WAITING_FOR_PARENT,
        values={"blocked_by": blocker_id, "message": message, "finished_at": at},
    )
    return len(
        apply_to_ids(
            conn,
            Transition.ARRIVE,
            joins,
            at=at,
            only_from=Status.WAITING_FOR_PARENT,
            values=JOIN_DUE,
        )
    )


def _waiting_descendants(conn: Connection, root_id: int) -> tuple[list[int], list[int]]:
    """Waiting descendants of ``root_id``, split into (jobs to block, JOIN nodes where
    the walk stopped). Next jobs already started (error handlers) are not waiting."""
    waiting = Status.WAITING_FOR_PARENT.value
    first = select(jobs.c.id, jobs.c.join_id).where(
        jobs.c.parent_id == root_id, jobs.c.status == waiting
    )
    tree = first.cte("subtree", recursive=True)
    tree = tree.union_all(
        select(jobs.c.id, jobs.c.join_id).where(
            jobs.c.parent_id == tree.c.id, jobs.c.status == waiting, tree.c.join_id.is_(None)
        )
    )
    blocked: list[int] = []
    joins: list[int] = []
    for job_id, join_id in conn.execute(select(tree.c.id, tree.c.join_id)):
        (joins if join_id is not None else blocked).append(job_id)
    return blocked, joins
