"""EXTERNAL jobs in the database: waiting for an integration system, and its callbacks.

An EXTERNAL job stays PROCESSING while the external system works, but no worker thread
waits for it: once notified, the worker hands the job's lease to the callback deadline
(owner :data:`OWNER`, expiry = now + ``parameters.timeoutSeconds``). A callback then ends
the job exactly as a worker's finish would (same transitions, same chaining through
``release.release_next_jobs``, one transaction); the lease reaper fails it when the deadline passes
(see :mod:`app.store.callback_deadline`), and housekeeping ends it when it was cancelled
meanwhile (:func:`end_cancelled`).

Callbacks name the attempt they answer, so a late answer to an earlier attempt changes
nothing, and a final callback delivered twice is recognised by the event it left.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update

from app.domain.outcome import RetryPolicy, decide_outcome
from app.domain.statuses import Status, Transition, target
from app.store import actions, completion
from app.store.callback_deadline import OWNER
from app.store.database import Database, now
from app.store.joblog import append_log
from app.store.release import release_next_jobs
from app.store.tables import job_events, jobs
from app.store.transitions import apply, record_event_rows

JOB_TYPE = "EXTERNAL"
# The lease owner of a job waiting for its callback: its lease is the callback deadline.


@dataclass(frozen=True)
class Callback:
    """What an integration system reported; ``status`` None is a progress update only."""

    status: Status | None = None
    attempt: int | None = None
    message: str | None = None
    result: Any = None
    progress: float | None = None


# -- handing over, deadline and cancellation ---------------------------------------------


def await_callback(
    db: Database,
    job_id: int,
    lease_token: str,
    timeout_seconds: float,
    message: str | None = None,
    log: str = "",
    log_limit: int = 64 * 1024,
    started_at: float | None = None,
) -> bool:
    """Hand a notified job's lease from its worker to the callback deadline (and store when
    its function started: its attempt runs until the callback).

    Guarded by the worker's lease token: if a callback already ended the job (it may come
    back before the notification's answer does), only the log is kept and this returns False.
    """

    def work(conn: Connection) -> bool:
        t = now()
        values: dict[str, Any] = {
            # A new token fences off the worker: a heartbeat of its still in flight must
            # not shorten the deadline back to a worker's lease.
            "lease_token": str(uuid.uuid4()),
            "lease_owner": OWNER,
            "lease_expires_at": t + timeout_seconds,
            "updated_at": t,
        }
        if message is not None:
            values["message"] = message
        if started_at is not None:
            values["started_at"] = started_at
        row = conn.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.status == Status.PROCESSING.value,
                jobs.c.lease_token == lease_token,
            )
            .values(**values)
            .returning(jobs.c.attempt)
        ).first()
        if log:
            # Kept even when a fast callback already ended the job: it is the record of
            # how the notification went.
            append_log(conn, job_id, log, log_limit)
        if row is None:
            return False
        reason = f"notified; waiting up to {timeout_seconds:g} s for a callback"
        record_event_rows(
            conn, [(job_id, row.attempt)], Status.PROCESSING, Status.PROCESSING, t, reason
        )
        return True

    return db.write(work)


def end_cancelled(db: Database, limit: int = 100) -> int:
    """Cancel jobs that were asked to stop while waiting for a callback.

    A running job is cancelled by its worker; a job waiting for its callback has none, so
    housekeeping ends it. Returns how many were cancelled.
    """

    def work(conn: Connection) -> tuple[int, bool]:
        t = now()
        waiting = and_(
            jobs.c.status == Status.PROCESSING.value,
            jobs.c.lease_owner == OWNER,
            jobs.c.cancel_requested.is_(True),
        )
        rows = conn.execute(
            select(jobs)
            .where(waiting)
            .order_by(jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        released = 0
        for row in rows:
            apply(
                conn,
                Transition.CANCEL,
                and_(waiting, jobs.c.id == row.id),
                at=t,
                only_from=Status.PROCESSING,
                values={
                    **_lease_cleared(),
                    "message": "cancelled while waiting for its callback",
                    "finished_at": t,
                },
                ran=(row.started_at, t),
            )
            released += release_next_jobs(conn, row, Status.CANCELLED, t)
        return len(rows), released > 0

    count, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return count


# -- callbacks ------------------------------------------------------------------------


def apply_callback(db: Database, job_id: int, callback: Callback, retry: RetryPolicy) -> Status:
    """Apply a callback to an EXTERNAL job in one transaction; returns the job's status.

    A final callback ends the current attempt as a worker's finish would: FINISHED, FAILED
    (or an automatic retry while attempts remain), CANCELLED if a cancel was requested;
    its next jobs and joins follow in the same transaction. The same final callback again
    is a no-op. Raises ``actions.NotFound``, or ``actions.Conflict`` for a job that is
    not EXTERNAL, not running, on another attempt, or already ended otherwise.
    """

    def work(conn: Connection) -> tuple[Status, bool]:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).first()
        if row is None:
            raise actions.NotFound(job_id)
        if row.job_type != JOB_TYPE:
            raise actions.Conflict(
                f"job {job_id} is a {row.job_type} job; only EXTERNAL jobs take callbacks"
            )
        status = Status(row.status)
        attempt = callback.attempt if callback.attempt is not None else row.attempt
        if callback.status is not None:
            ended = _end_of_attempt(conn, job_id, attempt)
            if ended is not None and ended.reason == _reason(callback.status):
                return status, False  # the same final callback, delivered again
            if ended is not None:
                retried = ended.to_status == Status.WAITING_FOR_DISPATCH
                outcome = "and was retried" if retried else ended.to_status
                why = f": {row.message}" if attempt == row.attempt and row.message else ""
                raise actions.Conflict(
                    f"attempt {attempt} of job {job_id} already ended {outcome}{why}"
                )
        if status != Status.PROCESSING:
            raise actions.Conflict(
                f"job {job_id} is {status}, not running; it takes no callback now"
            )
        if attempt != row.attempt:
            raise actions.Conflict(
                f"callback for attempt {attempt}, but job {job_id} is on attempt {row.attempt}"
            )
        current = and_(
            jobs.c.id == job_id,
            jobs.c.status == Status.PROCESSING.value,
            jobs.c.attempt == attempt,
        )
        t = now()
        if callback.status is None:
            _report_progress(conn, current, callback, t)
            return status, False
        return _end_attempt(conn, row, current, callback, retry, t)

    status, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return status


def _report_progress(conn: Connection, current: Any, callback: Callback, t: float) -> None:
    values: dict[str, Any] = {"updated_at": t}
    if callback.progress is not None:
        values["progress"] = callback.progress
    if callback.message is not None:
        values["message"] = callback.message
    conn.execute(update(jobs).where(current).values(**values))


def _end_attempt(
    conn: Connection,
    row: Row[Any],
    current: Any,
    callback: Callback,
    retry: RetryPolicy,
    t: float,
) -> tuple[Status, bool]:
    """The attempt's end, decided by the same rule as a worker's report."""
    assert callback.status is not None
    failed = callback.status == Status.FAILED
    verdict = decide_outcome(
        completion.attempt_of(row),
        failed=failed,
        message=callback.message or ("failed (reported by callback)" if failed else None),
        policy=retry,
    )
    # The attempt ran from its function's start until the callback ended it.
    ran = (row.started_at, t)
    values = completion.ended_attempt_values(callback.result, callback.progress, verdict, t, ran)
    reason = _reason(callback.status)
    apply(conn, verdict.transition, current, at=t, values=values, reason=reason, ran=ran)
    new_status = target(verdict.transition)
    released = release_next_jobs(conn, row, new_status, t)
    return new_status, released > 0 or verdict.retry_delay is not None


def _end_of_attempt(conn: Connection, job_id: int, attempt: int) -> Row[Any, Any] | None:
    """The event that ended ``attempt`` of the job (left PROCESSING), if it ended."""
    return conn.execute(
        select(job_events.c.to_status, job_events.c.reason)
        .where(
            job_events.c.job_id == job_id,
            job_events.c.attempt == attempt,
            job_events.c.from_status == Status.PROCESSING.value,
            job_events.c.to_status != Status.PROCESSING.value,
        )
        .order_by(job_events.c.id)
        .limit(1)
    ).first()


def _reason(status: Status) -> str:
    """The event reason of an attempt ended by a callback; how a replay is recognised."""
    return f"callback {status}"


def _lease_cleared() -> dict[str, Any]:
    return {"lease_token": None, "lease_owner": None, "lease_expires_at": None}
