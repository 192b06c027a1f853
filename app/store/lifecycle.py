"""What happens to a job after submission: claim, heartbeat, finish, cancel, retry, reap.

Each public function is one write transaction. Inside it the job row is read under a row
lock (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already excludes other
writers), the state machine decides, and :func:`app.store.transitions.apply` performs the
guarded update. Finishing a job and releasing (or skipping) its next jobs commit together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update

from app.statuses import NOT_STARTED, RETRYABLE, TERMINAL, Status, Transition, target
from app.store import joins
from app.store.database import Database, now
from app.store.joblog import append_log
from app.store.release import block_waiting_subtree, release_next_jobs
from app.store.tables import jobs
from app.store.transitions import apply, record_events


class Conflict(Exception):
    """The job's current status does not allow the requested change (HTTP 409)."""


class NotFound(Exception):
    """No job with that id (HTTP 404)."""


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds; ``lease_token`` fences every later write for it."""

    id: int
    root_id: int
    target_object: str
    job_type: str
    target_id: str | None
    parameters: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    lease_token: str


@dataclass(frozen=True)
class Outcome:
    """What a worker reports when a job's function returned or raised."""

    failed: bool
    message: str | None = None
    result: Any = None
    progress: float | None = None
    log: str = ""


@dataclass(frozen=True)
class Heartbeat:
    still_held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 600.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1)))


# -- claim and heartbeat -------------------------------------------------------------------


def claim(db: Database, owner: str, lease_seconds: float, limit: int = 1) -> list[Claim]:
    """Take up to ``limit`` claimable jobs, oldest due first."""

    def work(conn: Connection) -> list[Claim]:
        t = now()
        token = str(uuid.uuid4())
        due = (
            select(jobs.c.id)
            .where(jobs.c.status == Status.WAITING_FOR_DISPATCH.value, jobs.c.run_after <= t)
            .order_by(jobs.c.run_after, jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # Lock the ids first, in their own statement: as an IN (subquery) PostgreSQL may
        # rescan the skip-locked subquery per row and so claim every due job, not ``limit``.
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        rows = apply(
            conn,
            Transition.CLAIM,
            jobs.c.id.in_(ids),
            at=t,
            only_from=Status.WAITING_FOR_DISPATCH,
            values={
                "attempt": jobs.c.attempt + 1,
                "lease_token": token,
                "lease_owner": owner,
                "lease_expires_at": t + lease_seconds,
                "started_at": t,
                "finished_at": None,
                "progress": None,
            },
            returning=(
                jobs.c.root_id,
                jobs.c.target_object,
                jobs.c.job_type,
                jobs.c.target_id,
                jobs.c.parameters,
                jobs.c.attempt_floor,
                jobs.c.max_attempts,
                jobs.c.timeout_seconds,
            ),
        )
        return [
            Claim(
                id=r.id,
                root_id=r.root_id,
                target_object=r.target_object,
                job_type=r.job_type,
                target_id=r.target_id,
                parameters=r.parameters,
                attempt=r.attempt,
                max_attempts=r.attempt_floor + r.max_attempts,
                timeout_seconds=r.timeout_seconds,
                lease_token=token,
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

    return db.write(work)


def heartbeat(
    db: Database,
    job_id: int,
    token: str,
    lease_seconds: float,
    progress: float | None = None,
    message: str | None = None,
    log: str = "",
    log_limit: int = 64 * 1024,
) -> Heartbeat:
    """Renew a lease, store progress and new log lines, and report a pending cancel."""

    def work(conn: Connection) -> Heartbeat:
        t = now()
        values: dict[str, Any] = {"lease_expires_at": t + lease_seconds, "updated_at": t}
        if progress is not None:
            values["progress"] = progress
        if message is not None:
            values["message"] = message
        row = conn.execute(
            update(jobs)
            .where(_held(job_id, token))
            .values(**values)
            .returning(jobs.c.cancel_requested)
        ).first()
        if row is None:
            return Heartbeat(still_held=False, cancel_requested=False)
        if log:
            append_log(conn, job_id, log, log_limit)
        return Heartbeat(still_held=True, cancel_requested=bool(row.cancel_requested))

    return db.write(work)


# -- finish and the release of next jobs --------------------------------------------------


def finish(
    db: Database,
    job_id: int,
    token: str,
    outcome: Outcome,
    retry: RetryPolicy | None = None,
    log_limit: int = 64 * 1024,
) -> Status | None:
    """Record a job's outcome and release its next jobs, in one transaction.

    Returns the job's new status, or None when the caller no longer holds the lease
    (it expired and the job was re-claimed or reaped): a stale result changes nothing.
    """
    policy = retry or RetryPolicy()

    def work(conn: Connection) -> tuple[Status | None, bool]:
        row = _lock(conn, job_id)
        if row is None or row.status != Status.PROCESSING or row.lease_token != token:
            return None, False
        t = now()
        values: dict[str, Any] = {
            "message": outcome.message,
            "result": outcome.result,
            "lease_token": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "finished_at": t,
        }
        if outcome.progress is not None:
            values["progress"] = outcome.progress
        attempts_left = row.attempt - row.attempt_floor < row.max_attempts
        if row.cancel_requested:
            transition = Transition.CANCEL
            values["message"] = "cancelled while running"
        elif outcome.failed and attempts_left:
            transition = Transition.RETRY_LATER
            delay = policy.delay(row.attempt - row.attempt_floor)
            values.update(run_after=t + delay, finished_at=None)
            values["message"] = (
                f"{outcome.message} (attempt {row.attempt} failed; retry in {delay:g} s)"
            )
        elif outcome.failed:
            transition = Transition.FAIL
        else:
            transition = Transition.FINISH
        apply(
            conn, transition, _held(job_id, token), at=t, values=values, only_from=Status.PROCESSING
        )
        if outcome.log:
            append_log(conn, job_id, outcome.log, log_limit)
        new_status = target(transition)
        released = settle(conn, row, new_status, t)
        return new_status, released > 0 or transition == Transition.RETRY_LATER

    status, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return status


def settle(conn: Connection, row: Row[Any], status: Status, at: float) -> int:
    """What a job's end means for what follows it; returns how many jobs may now start.

    A JOIN node's end is its arrival at its join; any other job releases its next jobs.
    """
    if status not in TERMINAL:
        return 0
    if row.join_id is not None:
        return joins.arrive(conn, row, at)
    return release_next_jobs(conn, row, status, at)


# -- user actions ------------------------------------------------------------------------


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
            if row.join_id is not None:
                return Status.CANCELLED, joins.arrive(conn, row, t, Status.CANCELLED)
            return Status.CANCELLED, block_waiting_subtree(
                conn, job_id, Transition.CANCEL, reason, t
            )
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
        record_events(conn, [(job_id, row.attempt)], status, status, t, "cancel requested")
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
        apply(
            conn,
            Transition.UNBLOCK,
            jobs.c.blocked_by == job_id,
            at=t,
            values={"blocked_by": None, "message": None, "finished_at": None},
        )
        joins.rearm(conn, job_id, t)
        return Status.WAITING_FOR_PARENT if waits else Status.WAITING_FOR_DISPATCH

    status = db.write(work)
    db.notify_dispatchable()
    return status


# -- crash recovery ------------------------------------------------------------------------


def reap_expired_leases(db: Database, limit: int = 500) -> int:
    """Recover jobs whose worker vanished: re-run them if attempts remain, else fail them.

    Any process may call this at any time: each row is taken under a skip-locked row lock
    and changed by a guarded update, so one expired lease is acted on exactly once.
    """

    def work(conn: Connection) -> tuple[int, bool]:
        t = now()
        expired = conn.execute(
            select(jobs)
            .where(jobs.c.status == Status.PROCESSING.value, jobs.c.lease_expires_at < t)
            .order_by(jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        dispatchable = False
        for row in expired:
            dispatchable |= _recover(conn, row, t)
        return len(expired), dispatchable

    count, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return count


def _recover(conn: Connection, row: Row[Any], t: float) -> bool:
    cleared = {"lease_token": None, "lease_owner": None, "lease_expires_at": None}
    held = _held(row.id, row.lease_token)
    values: dict[str, Any]
    if row.cancel_requested:
        transition, values = Transition.CANCEL, {"message": "cancelled (worker vanished)"}
    elif row.attempt - row.attempt_floor < row.max_attempts:
        transition = Transition.RERUN
        values = {"run_after": t, "message": f"worker {row.lease_owner} vanished; re-running"}
    else:
        transition, values = Transition.INTERRUPT, {"message": "interrupted"}
    if transition != Transition.RERUN:
        values["finished_at"] = t
    moved = apply(
        conn, transition, held, at=t, only_from=Status.PROCESSING, values={**cleared, **values}
    )
    if not moved:
        return False
    if transition == Transition.RERUN:
        return True
    return settle(conn, row, target(transition), t) > 0


# -- helpers -----------------------------------------------------------------------------


def _lock(conn: Connection, job_id: int) -> Row[Any] | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).first()


def _held(job_id: int, token: str) -> Any:
    return and_(
        jobs.c.id == job_id,
        jobs.c.status == Status.PROCESSING.value,
        jobs.c.lease_token == token,
    )
