"""What happens to a job after submission: claim, heartbeat, finish, cancel, retry, reap.

Each public function is one write transaction. Inside it the job row is read under a row
lock (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already excludes other
writers), the state machine decides, and :func:`app.store.transitions.apply` performs the
guarded update. Finishing a job and releasing (or skipping) its next jobs commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, Row, and_, bindparam, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.domain.outcome import Attempt, RetryPolicy, Verdict, decide_outcome
from app.failpoints import failpoint
from app.statuses import NOT_STARTED, RETRYABLE, TERMINAL, Status, Transition, target
from app.store import callback_deadline, joins
from app.store.database import Database, now
from app.store.joblog import append_log
from app.store.release import (
    block_waiting_subtree,
    release_finished,
    release_next_jobs,
    revive_blocked,
)
from app.store.tables import jobs
from app.store.transitions import apply, guard, guarded_update, record, record_event_rows

log = logging.getLogger("jobchain.lifecycle")


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
    started: bool = True  # False: cancelled while it waited in its worker's batch


@dataclass(frozen=True)
class Heartbeat:
    still_held: bool
    cancel_requested: bool


# -- claim and heartbeat -------------------------------------------------------------------


def claim(db: Database, owner: str, lease_seconds: float, limit: int = 1) -> list[Claim]:
    """Take up to ``limit`` claimable jobs, oldest due first."""
    return complete(db, [], owner=owner, claim_limit=limit, lease_seconds=lease_seconds).claims


# The hot path's statements are built once: constructing SQLAlchemy statements per call
# cost more CPU than running them.
_DUE = (
    select(jobs.c.id)
    .where(
        jobs.c.status == Status.WAITING_FOR_DISPATCH.value,
        jobs.c.run_after <= bindparam("now"),
    )
    .order_by(jobs.c.run_after, jobs.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# What a claim reads of each job it takes.
_CLAIMED_COLUMNS = (
    jobs.c.id,
    jobs.c.attempt,
    jobs.c.root_id,
    jobs.c.target_object,
    jobs.c.job_type,
    jobs.c.target_id,
    jobs.c.parameters,
    jobs.c.attempt_floor,
    jobs.c.max_attempts,
    jobs.c.timeout_seconds,
    jobs.c.join_id,
    jobs.c.parent_id,
    jobs.c.arrival_outcome,
)
_CLAIM = guarded_update(
    Transition.CLAIM,
    jobs.c.id.in_(bindparam("ids", expanding=True)),
    {
        "attempt": jobs.c.attempt + 1,
        "lease_token": bindparam("token"),
        "lease_owner": bindparam("owner"),
        "lease_expires_at": bindparam("expires"),
        "started_at": bindparam("now"),
        "updated_at": bindparam("now"),
        "finished_at": None,
        "progress": None,
    },
    returning=_CLAIMED_COLUMNS,
)
_CLAIMED_BY = select(*_CLAIMED_COLUMNS).where(
    jobs.c.lease_token == bindparam("token"), jobs.c.status == Status.PROCESSING.value
)
# What recording an outcome reads of each job (not its parameters or result JSON).
_LOCK_MANY = (
    select(
        jobs.c.id,
        jobs.c.parent_id,
        jobs.c.target_object,
        jobs.c.job_type,
        jobs.c.status,
        jobs.c.attempt,
        jobs.c.attempt_floor,
        jobs.c.max_attempts,
        jobs.c.lease_token,
        jobs.c.cancel_requested,
        jobs.c.join_id,
    )
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
# Executed with many parameter sets: RETURNING is not used, the caller knows the rows.
_FINISH_MANY = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.lease_token == bindparam("b_token"),
        guard(Transition.FINISH),
    )
    .values(
        status=target(Transition.FINISH).value,
        message=bindparam("b_message"),
        result=bindparam("b_result", type_=jobs.c.result.type),
        progress=func.coalesce(bindparam("b_progress", type_=Float()), jobs.c.progress),
        lease_token=None,
        lease_owner=None,
        lease_expires_at=None,
        finished_at=bindparam("b_at"),
        updated_at=bindparam("b_at"),
    )
)


def _claim(
    conn: Connection, owner: str, limit: int, lease_seconds: float, t: float, token: str
) -> list[Row[Any]]:
    # Lock the ids first, in their own statement: as an IN (subquery) PostgreSQL may
    # rescan the skip-locked subquery per row and so claim every due job, not ``limit``.
    ids = list(conn.execute(_DUE, {"now": t, "limit": limit}).scalars())
    if not ids:
        return []
    rows = conn.execute(
        _CLAIM,
        {"ids": ids, "token": token, "owner": owner, "expires": t + lease_seconds, "now": t},
    ).all()
    record(conn, Transition.CLAIM, rows, t)
    return list(rows)


# Bounds the claim-arrive-claim loop of one transaction (a join of joins of joins ...).
_ARRIVAL_ROUNDS = 8


def _claim_arriving(
    conn: Connection, owner: str, limit: int, lease_seconds: float, t: float, token: str
) -> tuple[list[Claim], int, int]:
    """Claim up to ``limit`` jobs; JOIN nodes among them arrive at once, in this transaction.

    A JOIN node runs no user code, so handing it to a thread only delays its join: the
    last arrival decides the join (and the next round may claim what it started) in the
    commit that claimed it. Returns (claims to run, jobs the arrivals released, JOIN
    nodes claimed).
    """
    claims: list[Claim] = []
    released = arrived = 0
    for _ in range(_ARRIVAL_ROUNDS):
        rows = _claim(conn, owner, limit - len(claims), lease_seconds, t, token)
        nodes = [r for r in rows if r.join_id is not None]
        claims.extend(_claims([r for r in rows if r.join_id is None], token))
        if not nodes:
            break
        arrived += len(nodes)
        released += joins.arrive_claimed(conn, nodes, t)
        if len(claims) >= limit:
            break
    return claims, released, arrived


def _claimed_with(conn: Connection, token: str) -> list[Claim]:
    """The jobs an earlier run of this very transaction claimed, if its commit went through
    although its answer was lost: a replay takes them over instead of orphaning them."""
    return _claims(conn.execute(_CLAIMED_BY, {"token": token}).all(), token)


def _claims(rows: Sequence[Any], token: str) -> list[Claim]:
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


@dataclass(frozen=True)
class Done:
    """A job a worker ran, with its outcome, waiting to be recorded."""

    job_id: int
    token: str
    outcome: Outcome


@dataclass(frozen=True)
class Completion:
    statuses: dict[int, Status | None]  # None: the lease was lost, nothing recorded
    claims: list[Claim]
    dispatchable: int  # jobs made claimable and not claimed by this call
    retry_at: float | None = None  # earliest automatic retry this call scheduled


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
    done = Done(job_id, token, outcome)
    return complete(db, [done], retry=retry, log_limit=log_limit).statuses[job_id]


def complete(
    db: Database,
    done: list[Done],
    owner: str = "",
    claim_limit: int = 0,
    lease_seconds: float = 30.0,
    retry: RetryPolicy | None = None,
    log_limit: int = 64 * 1024,
    claim_token: str | None = None,
    again: bool = False,
) -> Completion:
    """Record finished jobs, release their next jobs, then claim up to ``claim_limit``.

    One transaction for all of it: a worker finishing a job and taking the next (often
    the child it just released) pays one commit, and a batch of quick jobs shares one.
    A caller that tries again after an error passes the same ``claim_token`` with
    ``again``: if the failed call did commit, its claims are taken over, not orphaned.
    """
    policy = retry or RetryPolicy()
    token = claim_token or str(uuid.uuid4())
    runs = 1 if again else 0

    def work(conn: Connection) -> Completion:
        nonlocal runs
        runs += 1
        t = now()
        statuses, released, retry_at = (
            _record(conn, done, policy, log_limit, t) if done else ({}, 0, None)
        )
        claims: list[Claim] = []
        if claim_limit:
            # A replay after a lost COMMIT answer: what the first run claimed is ours. (Its
            # recorded outcomes need nothing: their guard no longer matches, a no-op.)
            claims = _claimed_with(conn, token) if runs > 1 else []
            if not claims:
                claims, arrived, nodes = _claim_arriving(
                    conn, owner, claim_limit, lease_seconds, t, token
                )
                # JOIN nodes claimed here were released as claimable; they are done.
                released += arrived - nodes
        return Completion(statuses, claims, max(0, released - len(claims)), retry_at)

    # Replay-safe: every update above is guarded by status and lease token.
    completion = db.write(work, replay_safe=True)
    if done:
        failpoint("after_finish_commit")
    if completion.dispatchable:
        db.notify_dispatchable(completion.dispatchable)
    elif runs > 1:
        db.notify_dispatchable(None)  # an earlier run may have committed releases unannounced
    return completion


def _record(
    conn: Connection, done: list[Done], policy: RetryPolicy, log_limit: int, t: float
) -> tuple[dict[int, Status | None], int, float | None]:
    locked: list[Row[Any]] = list(conn.execute(_LOCK_MANY, {"ids": [d.job_id for d in done]}))
    rows = {r.id: r for r in locked}
    statuses: dict[int, Status | None] = {}
    finished: list[tuple[Row[Any], Done]] = []
    released = 0
    retry_at: float | None = None
    for item in done:
        row = rows.get(item.job_id)
        if row is None or row.status != Status.PROCESSING or row.lease_token != item.token:
            statuses[item.job_id] = None
            continue
        verdict = decide_outcome(
            attempt_of(row),
            failed=item.outcome.failed,
            message=item.outcome.message,
            policy=policy,
            started=item.outcome.started,
        )
        if verdict.transition == Transition.FINISH:
            finished.append((row, item))  # the common case: batched below
            statuses[item.job_id] = Status.FINISHED
            continue
        values = ended_attempt_values(item.outcome.result, item.outcome.progress, verdict, t)
        apply(conn, verdict.transition, _held(row.id, item.token), at=t, values=values)
        if item.outcome.log:
            append_log(conn, row.id, item.outcome.log, log_limit)
        statuses[item.job_id] = target(verdict.transition)
        released += release_next_jobs(conn, row, target(verdict.transition), t)
        if verdict.retry_delay is not None:
            retry_at = min(retry_at or values["run_after"], values["run_after"])
    if finished:
        released += _record_finished(conn, finished, log_limit, t)
    failpoint("before_finish_commit")  # every outcome written, the transaction still open
    return statuses, released, retry_at


def attempt_of(row: Row[Any]) -> Attempt:
    return Attempt(
        attempt=row.attempt,
        attempt_floor=row.attempt_floor,
        max_attempts=row.max_attempts,
        cancel_requested=bool(row.cancel_requested),
    )


def ended_attempt_values(
    result: Any, progress: float | None, verdict: Verdict, t: float
) -> dict[str, Any]:
    """The columns an ended attempt writes, for a worker's report and a callback alike."""
    values: dict[str, Any] = {
        "message": verdict.message,
        "result": result,
        "lease_token": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": t,
    }
    if progress is not None:
        values["progress"] = progress
    if verdict.retry_delay is not None:
        values.update(run_after=t + verdict.retry_delay, finished_at=None)
    return values


def _record_finished(
    conn: Connection, finished: list[tuple[Row[Any], Done]], log_limit: int, t: float
) -> int:
    """FINISHED jobs: one executemany, then one release of all their next jobs."""
    conn.execute(
        _FINISH_MANY,
        [
            {
                "b_id": row.id,
                "b_token": item.token,
                "b_message": item.outcome.message,
                "b_result": item.outcome.result,
                "b_progress": item.outcome.progress,
                "b_at": t,
            }
            for row, item in finished
        ],
    )
    record(conn, Transition.FINISH, (row for row, _ in finished), t)
    for row, item in finished:
        if item.outcome.log:
            append_log(conn, row.id, item.outcome.log, log_limit)
    return release_finished(conn, [row.id for row, _ in finished], t)


def start_check(db: Database, claim: Claim) -> bool:
    """Whether a claimed job may start now: still held, and no cancel requested.

    A worker asks this before starting each job that waited in its batch, so a job
    cancelled while it waited never starts its function (the cancel committed before
    this read; a later cancel finds the job running and asks it to stop).
    """
    with db.read() as conn:
        row = conn.execute(_START_CHECK, {"job_id": claim.id, "token": claim.lease_token}).first()
    return row is not None and not row.cancel_requested


_START_CHECK = select(jobs.c.cancel_requested).where(
    jobs.c.id == bindparam("job_id"),
    jobs.c.lease_token == bindparam("token"),
    jobs.c.status == Status.PROCESSING.value,
)


def release_unstarted(db: Database, claims: list[Claim]) -> int:
    """Hand back claimed jobs a worker never started (it got stuck behind a slow job).

    One whose cancel was requested meanwhile is cancelled instead: it never starts.
    """

    def work(conn: Connection) -> int:
        t = now()
        ids = [c.id for c in claims]
        locked: list[Row[Any]] = list(conn.execute(_LOCK_MANY, {"ids": ids}))
        rows = {r.id: r for r in locked}
        moved = 0
        for claim_ in claims:
            row = rows.get(claim_.id)
            if row is None or row.status != Status.PROCESSING:
                continue
            if row.cancel_requested:
                verdict = decide_outcome(
                    attempt_of(row),
                    failed=False,
                    message=None,
                    policy=RetryPolicy(),
                    started=False,
                )
                values = ended_attempt_values(None, None, verdict, t)
                if apply(
                    conn, verdict.transition, _held(row.id, claim_.lease_token), at=t, values=values
                ):
                    moved += release_next_jobs(conn, row, target(verdict.transition), t)
                continue
            moved += len(
                apply(
                    conn,
                    Transition.UNCLAIM,
                    _held(claim_.id, claim_.lease_token),
                    at=t,
                    values={
                        "attempt": jobs.c.attempt - 1,
                        "lease_token": None,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "started_at": None,
                    },
                )
            )
        return moved

    moved = db.write(work)
    if moved:
        db.notify_dispatchable(moved)
    return moved


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
        joins.rearm(conn, [job_id, *revived], t)
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
            # One savepoint per job: a job that cannot be recovered (a bug, bad data) is
            # logged and skipped instead of rolling back, forever, every other recovery.
            try:
                with conn.begin_nested():
                    dispatchable |= _recover(conn, row, t)
            except SQLAlchemyError:
                log.exception("recovering job %s failed; skipped", row.id)
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
    elif row.lease_owner == callback_deadline.OWNER:  # an EXTERNAL job's deadline passed
        transition, values = callback_deadline.on_deadline(row)
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
    return release_next_jobs(conn, row, target(transition), t) > 0


# -- helpers -----------------------------------------------------------------------------


def _lock(conn: Connection, job_id: int) -> Row[Any] | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).first()


def _held(job_id: int, token: str) -> Any:
    return and_(
        jobs.c.id == job_id,
        jobs.c.status == Status.PROCESSING.value,
        jobs.c.lease_token == token,
    )
