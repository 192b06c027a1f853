"""A job cancelled while it waits in its worker's batch never starts its function.

A worker claims up to 16 quick jobs at once. Cancelling one of those before its turn must
stop it before it runs (no side effects), whether the worker reaches it next (start
check) or hands it back unstarted (hand-back).
"""

from __future__ import annotations

import threading
from typing import Any

from app.domain.statuses import Status
from app.runner.lane import Lane
from app.runner.worker_pool import WorkerPool
from app.store import actions, claims, queries, recovery, start_checks
from app.store.database import Database
from jobs import REGISTRY, JobContext, job_type
from tests.helpers import status_of
from tests.store.test_joins import submit

STARTED: list[int] = []
_STARTED_LOCK = threading.Lock()


@job_type("SIDE_EFFECT")
def side_effect(ctx: JobContext) -> None:
    """Records that its function started: the side effect a cancel must prevent."""
    with _STARTED_LOCK:
        STARTED.append(ctx.job_id)


def three_roots(db: Database) -> list[int]:
    payload: dict[str, Any] = {
        "targetObject": "x.SIDE_EFFECT",
        "nextJobs": [{"targetObject": "after.NOOP"}],
    }
    return [submit(db, payload) for _ in range(3)]


def next_job(db: Database, root: int) -> dict[str, Any]:
    tree = queries.get_tree(db, root)
    assert tree is not None
    [child] = tree["next_jobs"]
    return dict(child)


def test_the_start_check_sees_a_cancel_made_after_the_claim(db: Database) -> None:
    roots = three_roots(db)
    claimed_now = claims.claim(db, "w", lease_seconds=60, limit=3)
    assert [c.id for c in claimed_now] == roots
    assert actions.cancel(db, roots[1]) == Status.PROCESSING  # claimed: a request only
    assert [start_checks.start_check(db, c) for c in claimed_now] == [True, False, True]


def test_a_job_cancelled_in_its_workers_batch_never_runs(db: Database, settings: Any) -> None:
    """Drive one worker lane by hand: claim three, cancel the second, run the lane."""
    roots = three_roots(db)
    pool = WorkerPool(db, REGISTRY, settings)  # not started: this test is its only thread
    lane = Lane()
    assert pool._flush(lane, claim_limit=3)
    assert [c.id for c in lane.held] == roots
    STARTED.clear()
    actions.cancel(db, roots[1])
    while lane.held:
        pool._work_step(lane)
    pool._flush(lane, claim_limit=0)

    assert [roots[0], roots[2]] == STARTED
    assert [status_of(db, r) for r in roots] == ["FINISHED", "CANCELLED", "FINISHED"]
    cancelled = queries.get_job(db, roots[1])
    assert cancelled is not None
    assert cancelled["message"] == "cancelled before it started"
    assert next_job(db, roots[1])["status"] == "CANCELLED"
    assert next_job(db, roots[0])["status"] == "WAITING_FOR_DISPATCH"


def test_a_handed_back_job_whose_cancel_was_requested_is_cancelled(db: Database) -> None:
    roots = three_roots(db)
    claimed_now = claims.claim(db, "w", lease_seconds=60, limit=3)
    actions.cancel(db, roots[2])
    assert recovery.release_unstarted(db, claimed_now[1:]) == 1  # roots[1] is claimable again
    assert status_of(db, roots[1]) == "WAITING_FOR_DISPATCH"
    assert status_of(db, roots[2]) == "CANCELLED"
    assert next_job(db, roots[2])["status"] == "CANCELLED"
    # A cancelled job is never claimable again; the handed-back one is.
    again = claims.claim(db, "w", lease_seconds=60, limit=3)
    assert [c.id for c in again] == [roots[1]]


def test_a_workers_own_start_checks_answer_the_same(db: Database) -> None:
    """The worker thread's cheap check (its own driver connection) agrees with the
    transactional one, and its connection goes back to the pool in a usable state."""
    roots = three_roots(db)
    claimed_now = claims.claim(db, "w", lease_seconds=60, limit=3)
    actions.cancel(db, roots[1])
    checks = start_checks.StartChecks(db, max_age=0)  # a fresh read for every job
    try:
        assert [checks.may_start(c) for c in claimed_now] == [True, False, True]
        actions.cancel(db, roots[2])  # seen by the very next check on the same connection
        assert checks.may_start(claimed_now[2]) is False
    finally:
        checks.close()
    # Every pooled connection still runs ordinary transactions.
    assert status_after_a_write(db, roots[0]) == "PROCESSING"


def status_after_a_write(db: Database, job_id: int) -> str:
    db.write(lambda conn: None)
    return status_of(db, job_id)


def test_one_read_answers_for_the_batch_while_it_is_fresh(db: Database) -> None:
    """The worker reads the job about to start and those waiting behind it at once; a
    waiting job starts on that answer only while it is younger than ``max_age``."""
    roots = three_roots(db)
    first, second, third = claims.claim(db, "w", lease_seconds=60, limit=3)
    actions.cancel(db, roots[1])
    fresh = start_checks.StartChecks(db, max_age=3600.0)
    stale = start_checks.StartChecks(db, max_age=0)
    try:
        assert fresh.may_start(first, [second, third])
        assert stale.may_start(first, [second, third])
        actions.cancel(db, roots[2])  # after both reads
        # Within its age the answer stands: the bound a cancel must beat.
        assert [fresh.may_start(second, [third]), fresh.may_start(third)] == [False, True]
        # Past it (here at once), a job is read again before it starts.
        assert [stale.may_start(second, [third]), stale.may_start(third)] == [False, False]
    finally:
        fresh.close()
        stale.close()
