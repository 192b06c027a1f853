"""Recording what a worker's jobs did, releasing what follows, and claiming more.

One transaction records a batch of outcomes (each decided by
:func:`app.domain.outcome.decide_outcome`), releases or skips the next jobs of every job
that ended, and claims the worker's next jobs: a worker finishing a job and taking the
next (often the child it just released) pays one commit; on PostgreSQL a chain's hop is one
statement, its own transaction (app/store/hop.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.exc import DBAPIError

from app.domain.outcome import Attempt, RetryPolicy, Verdict, decide_outcome
from app.domain.statuses import Status, Transition, target
from app.failpoints import failpoint
from app.store import join_endings
from app.store.claims import Claim, claim_with_arrivals, claimed_with, end_decided, held, settle
from app.store.database import Database, now
from app.store.dialect import is_transient
from app.store.guards import FoundBy
from app.store.hop import (
    FINISH_AND_RELEASE,
    FINISH_CONDITION,
    FINISH_VALUES,
    RUN,
    HandOff,
    finish_and_hand_off,
    hop_alone,
)
from app.store.joblog import append_log
from app.store.join_claims import Taken
from app.store.join_endings import Decided
from app.store.release import release_finished, release_next_jobs
from app.store.tables import jobs
from app.store.transitions import Ran, apply, logged_update


@dataclass(frozen=True)
class Outcome:
    """What a worker reports when a job's function returned or raised."""

    failed: bool
    message: str | None = None
    result: Any = None
    progress: float | None = None
    log: str = ""
    started: bool = True  # False: cancelled while it waited in its worker's batch
    # When the function really started and ended (epoch seconds, stamped by the worker
    # thread around the call). A report without them: the claim and the recording time.
    started_at: float | None = None
    finished_at: float | None = None


LOCK_FOR_RECORDING = (
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
        jobs.c.claimed_at,
    )
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
# Executed with many parameter sets, returning nothing: the caller knows the rows (locked).
_FINISH_MANY = logged_update(
    Transition.FINISH, FINISH_CONDITION, FINISH_VALUES, ran=RUN, found_by=FoundBy.KEY
)


@dataclass(frozen=True)
class Done:
    """A job a worker ran, with its outcome, waiting to be recorded."""

    job_id: int
    token: str
    outcome: Outcome
    joins_below: bool = False  # claim and arrive its JOIN nodes in the recording commit


@dataclass(frozen=True)
class Completion:
    statuses: dict[int, Status | None]  # None: the lease was lost, nothing recorded
    claims: list[Claim]
    dispatchable: int  # jobs made claimable and not claimed by this call
    retry_at: float | None = None  # earliest automatic retry this call scheduled
    # Held JOIN nodes that decided their join, to end in the caller's next call.
    decided: list[Decided] = field(default_factory=list)


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
    return record_and_claim(db, [done], retry=retry, log_limit=log_limit).statuses[job_id]


def record_and_claim(
    db: Database,
    done: list[Done],
    owner: str = "",
    claim_limit: int = 0,
    lease_seconds: float = 30.0,
    retry: RetryPolicy | None = None,
    log_limit: int = 64 * 1024,
    claim_token: str | None = None,
    again: bool = False,
    end_first: Sequence[Decided] = (),
    defer_endings: bool = False,
) -> Completion:
    """Record finished jobs, release their next jobs, then claim up to ``claim_limit``.

    One transaction for all of it: a worker finishing a job and taking the next (often
    the child it just released) pays one commit, and a batch of quick jobs shares one.
    A caller that tries again after an error passes the same ``claim_token`` with
    ``again``: if the failed call did commit, its claims are taken over, not orphaned.

    Decisions of joins taken here leave their nodes to end later (join_endings): with
    ``defer_endings`` the caller passes them as ``end_first`` of its next call (a worker
    does, so the job a join started does not wait for them), else they end right after.
    """
    policy = retry or RetryPolicy()
    token = claim_token or str(uuid.uuid4())
    runs = 1 if again else 0
    read = False  # the job must be read: an unread record did not finish it
    if not again and not end_first and defer_endings and _alone_applies(db, done, claim_limit):
        try:
            alone = _hop_alone(db, done[0], token, owner, claim_limit, lease_seconds)
        except DBAPIError as exc:
            if not is_transient(exc, sqlite=False):
                raise
            alone, runs = None, 1  # its outcome is unknown: replayed below, as after COMMIT
        if alone is not None:
            return alone
        read = runs == 0

    def work(conn: Connection) -> Completion:
        nonlocal runs
        runs += 1
        t = now()
        join_endings.end_decided(conn, end_first, t)
        below = [d.job_id for d in done if d.joins_below]
        claiming = bool(claim_limit or below)
        hand, unread = None, not read
        if claiming and runs == 1 and len(done) == 1 and unread:  # a replay reads instead
            claim = {"token": token, "owner": owner, "expires": t + lease_seconds, "now": t}
            hand = _finish_unread(conn, done[0], log_limit, t, {**claim, "limit": claim_limit})
            unread = False  # tried: a job it did not finish is read
        statuses: dict[int, Status | None]
        if hand is not None:
            failpoint("before_finish_commit")
            statuses, released, retry_at = {done[0].job_id: Status.FINISHED}, hand.released, None
        else:
            statuses, released, retry_at = (
                _record(conn, done, policy, log_limit, t, unread) if done else ({}, 0, None)
            )
        taken = Taken(token=token)
        if claiming:
            # A replay after a lost COMMIT answer: what the first run claimed is ours. (Its
            # recorded outcomes need nothing: their guard no longer matches, a no-op.)
            taken = claimed_with(conn, token) if runs > 1 else taken
            if not (taken.claims or taken.deferred):
                first = hand.taken if hand is not None else None
                full = hand is not None and hand.due >= claim_limit
                locked = hand.joins if hand is not None else None
                taken = claim_with_arrivals(
                    conn, owner, claim_limit, lease_seconds, t, token, below, first, full, locked
                )
                # JOIN nodes claimed here were released as claimable; they are done.
                released += taken.released - taken.nodes
        committed[:] = [taken]  # this run's: an earlier run was rolled back
        left = released - len(taken.claims) + taken.due_before  # claims of older jobs: not ours
        return Completion(statuses, taken.claims, max(0, left), retry_at)

    # Replay-safe: every update above is guarded by status and lease token. Unpinged: a
    # worker's hot path saves the round trip; a dead connection fails the first statement
    # and the transaction runs again.
    committed: list[Taken] = []
    completion = db.write(work, replay_safe=True, ping=False)
    if done:
        failpoint("after_finish_commit")
    [taken] = committed
    if taken.deferred:  # JOIN nodes whose join was busy: they arrive now
        more = settle(db, taken, token, owner, claim_limit, lease_seconds)
        completion = replace(
            completion, claims=taken.claims, dispatchable=completion.dispatchable + more
        )
    if not defer_endings:
        end_decided(db, taken.decided)
    completion = replace(completion, decided=taken.decided if defer_endings else [])
    if completion.dispatchable:
        db.notify_dispatchable(completion.dispatchable)
    elif runs > 1:
        db.notify_dispatchable(None)  # an earlier run may have committed releases unannounced
    return completion


def _record(
    conn: Connection, done: list[Done], policy: RetryPolicy, log_limit: int, t: float, unread: bool
) -> tuple[dict[int, Status | None], int, float | None]:
    if unread and len(done) == 1 and (hand := _finish_unread(conn, done[0], log_limit, t)):
        failpoint("before_finish_commit")
        return {done[0].job_id: Status.FINISHED}, hand.released, None
    ids = [d.job_id for d in done]
    locked: list[Row[Any]] = list(conn.execute(LOCK_FOR_RECORDING, {"ids": ids}))
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
        ran = run_of(row, item.outcome, t)
        values = ended_attempt_values(item.outcome.result, item.outcome.progress, verdict, t, ran)
        held_row = held(row.id, item.token)
        apply(conn, verdict.transition, held_row, at=t, values=values, ran=ran)
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


def _finish_unread(
    conn: Connection, item: Done, log_limit: int, t: float, claim: dict[str, Any] | None = None
) -> HandOff | None:
    """PostgreSQL, one job that reported success with its run's times: finish it and start
    its next jobs in one statement, unread; with ``claim`` (a worker that claims) the same
    statement hands it its next jobs and claims (app/store/hop.py). None when it did not
    finish so (a cancel request, a lost lease): the caller records it the long way."""
    if conn.dialect.name != "postgresql" or not _unread(item):
        return None
    params = unread_params(item, t)
    if claim is None:
        row = conn.execute(FINISH_AND_RELEASE, params).one()
        hand = HandOff(int(row.started), []) if row.ended else None
    else:
        hand = finish_and_hand_off(conn, {**params, **claim}, arrive=item.joins_below)
    if hand is not None and item.outcome.log:
        append_log(conn, item.job_id, item.outcome.log, log_limit)
    return hand


def _unread(item: Done) -> bool:
    """Whether a report can be recorded without reading the job first: a success with
    its run's times (the statement's guards check the rest)."""
    outcome = item.outcome
    stamped = None not in (outcome.started_at, outcome.finished_at)
    return not outcome.failed and outcome.started and stamped


def unread_params(item: Done, t: float) -> dict[str, Any]:
    """The one-statement finish's parameters for a success with its run's times."""
    outcome = item.outcome
    return {
        **_finish_params(item.job_id, item, outcome.started_at, outcome.finished_at, t),
        "at": t,
    }


def _finish_params(
    job_id: int, item: Done, started: float | None, ended: float | None, t: float
) -> dict[str, Any]:
    return {
        "b_id": job_id,
        "b_token": item.token,
        "b_message": item.outcome.message,
        "b_result": item.outcome.result,
        "b_progress": item.outcome.progress,
        "b_started": started,
        "b_ended": ended,
        "b_at": t,
    }


def attempt_of(row: Row[Any]) -> Attempt:
    return Attempt(
        attempt=row.attempt,
        attempt_floor=row.attempt_floor,
        max_attempts=row.max_attempts,
        cancel_requested=bool(row.cancel_requested),
    )


def run_of(row: Row[Any], outcome: Outcome, t: float) -> Ran:
    """When an attempt's function started and ended: the worker's stamps (a report without
    them: the claim and ``t``); nothing for a job that never started."""
    if not outcome.started:
        return None, None
    started = outcome.started_at if outcome.started_at is not None else row.claimed_at
    return started, outcome.finished_at if outcome.finished_at is not None else t


def ended_attempt_values(
    result: Any, progress: float | None, verdict: Verdict, t: float, ran: Ran = (None, None)
) -> dict[str, Any]:
    """The columns an ended attempt writes, for a worker's report and a callback alike:
    ``ran`` is when its function started and ended (the end defaults to ``t``)."""
    started, ended = ran
    values: dict[str, Any] = {
        "message": verdict.message,
        "result": result,
        "lease_token": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": ended if ended is not None else t,
    }
    if started is not None:
        values["started_at"] = started
    if progress is not None:
        values["progress"] = progress
    if verdict.retry_delay is not None:
        values.update(run_after=t + verdict.retry_delay, finished_at=None)
    return values


def _record_finished(
    conn: Connection, finished: list[tuple[Row[Any], Done]], log_limit: int, t: float
) -> int:
    """FINISHED jobs: one executemany, then one release of all their next jobs (on
    PostgreSQL, a single job: one statement for both)."""
    params = [
        _finish_params(row.id, item, *run_of(row, item.outcome, t), t) for row, item in finished
    ]
    for row, item in finished:
        if item.outcome.log:
            append_log(conn, row.id, item.outcome.log, log_limit)
    if len(finished) == 1 and conn.dialect.name == "postgresql":
        return int(conn.execute(FINISH_AND_RELEASE, {**params[0], "at": t}).one().started)
    _FINISH_MANY.run_many(conn, params, [row for row, _ in finished], t)
    return release_finished(conn, [row.id for row, _ in finished], t)


def _alone_applies(db: Database, done: list[Done], claim_limit: int) -> bool:
    """Whether a report is a chain's plain hop: one success with its run's times and no
    log, no JOIN node below, and a worker that claims (see hop.hop_alone)."""
    return (
        not db.is_sqlite
        and claim_limit > 0
        and len(done) == 1
        and not done[0].joins_below
        and not done[0].outcome.log
        and _unread(done[0])
    )


def _hop_alone(
    db: Database, item: Done, token: str, owner: str, limit: int, lease_seconds: float
) -> Completion | None:
    t = now()
    claim = {"token": token, "owner": owner, "expires": t + lease_seconds, "now": t}
    hopped = hop_alone(db, {**unread_params(item, t), **claim, "limit": limit}, lease_seconds)
    if hopped is None:
        return None
    (taken, dispatchable), finished = hopped, Status.FINISHED
    return Completion({item.job_id: finished}, taken.claims, dispatchable, None, taken.decided)
