"""Chaining: what a parent's final outcome does to the next jobs waiting on it.

Called inside the transaction that ended the parent, so a parent's end and the start (or
skip) of its next jobs commit together. JOIN nodes are never skipped or cancelled here:
they start whatever the parent's outcome, so every outcome reaches their join.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, bindparam, case, select

from app.domain.statuses import TERMINAL, TRANSITIONS, Status, Transition, target
from app.store.guards import FoundBy
from app.store.tables import jobs
from app.store.transitions import AT, LoggedUpdate, apply, apply_to_ids, logged_update

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
    descendant. JOIN nodes start whatever the outcome and carry it to their join.
    ``reason`` replaces the default skip message.
    """
    if outcome not in TERMINAL:
        return 0
    if outcome == Status.FINISHED:
        return release_finished(conn, [parent.id], at)
    children = jobs.c.parent_id == parent.id
    started = len(
        apply(
            conn,
            Transition.ARRIVE,
            and_(children, jobs.c.join_id.is_not(None)),
            at=at,
            values=_arriving_with(outcome),
        )
    )
    if outcome == Status.FAILED:
        started += len(
            apply(
                conn,
                Transition.PARENT_FAILED,
                and_(children, jobs.c.execute_on_error.is_(True), jobs.c.join_id.is_(None)),
                at=at,
                values={"run_after": at},
            )
        )
        message = reason or f"skipped: job {parent.id} ({parent.target_object}) failed"
        return started + block_waiting_subtree(conn, parent.id, Transition.SKIP, message, at)
    message = reason or f"cancelled: job {parent.id} was cancelled"
    transition = Transition.SKIP if outcome == Status.SKIPPED else Transition.CANCEL
    return started + block_waiting_subtree(conn, parent.id, transition, message, at)


def _arriving_with(outcome: Status) -> dict[str, Any]:
    """A released JOIN node's columns: the outcome it carries, and due at its creation."""
    return {**JOIN_DUE, "arrival_outcome": outcome.value}


# Ordinary next jobs (PARENT_FINISHED) and JOIN nodes (ARRIVE) of FINISHED parents start in
# one statement: the two transitions must share their source and target.
if TRANSITIONS[Transition.PARENT_FINISHED] != TRANSITIONS[Transition.ARRIVE]:
    raise RuntimeError("PARENT_FINISHED and ARRIVE must move the same statuses")


def start_children(parents: ColumnElement[bool], name: str = "moved") -> LoggedUpdate:
    """Start the waiting next jobs of the FINISHED parents ``parents`` selects (a condition
    on ``jobs.parent_id``); ``at`` is the bound time."""
    return logged_update(
        Transition.PARENT_FINISHED,
        parents,
        {
            "run_after": case((jobs.c.join_id.is_not(None), jobs.c.created_at), else_=AT),
            "arrival_outcome": case((jobs.c.join_id.is_not(None), Status.FINISHED.value)),
            "updated_at": AT,
        },
        returning=(jobs.c.join_id,),
        alternate=(Transition.ARRIVE, jobs.c.join_id),
        name=name,
        found_by=FoundBy.KEY,
    )


_START_CHILDREN = start_children(jobs.c.parent_id.in_(bindparam("parents", expanding=True)))


def release_finished(conn: Connection, parent_ids: list[int], at: float) -> int:
    """Start every waiting next job of these FINISHED parents (one prebuilt statement,
    this is the hot path); returns how many."""
    return len(_START_CHILDREN.run(conn, {"parents": parent_ids, "at": at}, at))


def block_waiting_subtree(
    conn: Connection, blocker_id: int, transition: Transition, message: str, at: float
) -> int:
    """Skip or cancel the not-yet-started descendants of ``blocker_id``.

    Stops at JOIN nodes, which start instead (returned count) so their join hears of the
    branch's end, carrying it as SKIPPED or CANCELLED. The blocked jobs remember the
    blocker: retrying it brings them back.
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
            values=_arriving_with(target(transition)),
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


def revive_blocked(conn: Connection, blocker_ids: list[int], at: float) -> list[int]:
    """What these jobs skipped or cancelled waits for its parent again (their blocker runs
    again, or its join reopened); returns the revived ids. Jobs cancelled on their own
    (not blocked by one of these) stay cancelled."""
    revived = apply(
        conn,
        Transition.UNBLOCK,
        jobs.c.blocked_by.in_(blocker_ids),
        at=at,
        values={"blocked_by": None, "message": None, "finished_at": None},
    )
    return [r.id for r in revived]
