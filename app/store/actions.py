"""What users do to jobs: cancel a job (and what waits below it), retry a failed one.

Each is one transaction on the job's locked row, decided by the transition table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from app.domain.statuses import NOT_STARTED, RETRYABLE, TERMINAL, Status, Transition
from app.store import join_rearm, joins
from app.store.database import Database, now
from app.store.release import block_waiting_subtree, revive_blocked
from app.store.tables import jobs
from app.store.transitions import apply, record_event_rows


class Conflict(Exception):
    """The job's current status does not allow the requested change (HTTP 409)."""


class NotFound(Exception):
    """No job with that id (HTTP 404)."""


def cancel(db: Database, job_id: int) -> Status:
    """Cancel a job and its not-yet-started subtree; a running job is asked to stop.

    Returns the job's status after the call (PROCESSING while a running job winds down).
    A cancelled JOIN node arrives at its join as a cancelled branch.
    """

    def work(conn: Connection) -> tuple[Status, int]:
        row = _lock(conn, job_id)
        if row is None:
            raise NotFound(job_id)
        status = Status(row.status)
        t = now()
        reason = f"cancelled: job {job_id} was cancelled"
        if status in NOT_STARTED:
            apply(
                conn,
                Transition.CANCEL,
                jobs.c.id == job_id,
                at=t,
                only_from=status,
                values={"message": "cancelled by request", "finished_at": t},
            )
            started = block_waiting_subtree(conn, job_id, Transition.CANCEL, reason, t)
            if row.join_id is not None:
                started += joins.arrive_cancelled(conn, row, t)
            return Status.CANCELLED, started
        if status != Status.PROCESSING:
            raise Conflict(
                f"job {job_id} is {status}; only waiting or running jobs can be cancelled"
            )
        if row.cancel_requested:
            return Status.PROCESSING, 0
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == Status.PROCESSING.value)
            .values(cancel_requested=True, updated_at=t)
        )
        record_event_rows(conn, [(job_id, row.attempt)], status, status, t, "cancel requested")
        return Status.PROCESSING, block_waiting_subtree(conn, job_id, Transition.CANCEL, reason, t)

    status, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return status


def retry(db: Database, job_id: int) -> Status:
    """Run a FAILED or CANCELLED job again; what it skipped or cancelled waits again."""

    def work(conn: Connection) -> Status:
        row = _lock(conn, job_id)
        if row is None:
            raise NotFound(job_id)
        status = Status(row.status)
        if status not in RETRYABLE:
            raise Conflict(
                f"job {job_id} is {status}; only FAILED or CANCELLED jobs can be retried"
            )
        if row.join_id is not None:
            raise Conflict(
                f"job {job_id} is a JOIN node: it ends with its join's decision; "
                "retry the branch that failed instead"
            )
        t = now()
        # Cancelled before its parent ended: it waits for that parent again, not runs now.
        parent = _lock(conn, row.parent_id) if row.parent_id is not None else None
        waits = (
            status == Status.CANCELLED
            and parent is not None
            and Status(parent.status) not in TERMINAL
        )
        apply(
            conn,
            Transition.UNBLOCK if waits else Transition.USER_RETRY,
            jobs.c.id == job_id,
            at=t,
            only_from=status,
            reason=Transition.USER_RETRY,
            values={
                "run_after": t,
                "attempt_floor": row.attempt,
                "cancel_requested": False,
                "blocked_by": None,
                "message": None,
                "result": None,
                "progress": None,
                "finished_at": None,
            },
        )
        revived = revive_blocked(conn, [job_id], t)
        join_rearm.rearm(conn, [job_id, *revived], t)
        return Status.WAITING_FOR_PARENT if waits else Status.WAITING_FOR_DISPATCH

    status = db.write(work)
    db.notify_dispatchable()
    return status


def _lock(conn: Connection, job_id: int) -> Row[Any] | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).first()
