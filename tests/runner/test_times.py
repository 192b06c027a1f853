"""Times that say what happened: a job's start and end are its function's, not its batch's.

A worker claims up to 16 quick jobs at once and records them together. Each job's
``started_at`` / ``finished_at`` must be when its own function started and returned (a job
that waited behind others in the batch started after the one before it ended), its claim
keeps its own time (``claimed_at``), and the event that ended each attempt carries that
attempt's run, so every attempt of a retried job can be told.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from app.admin import timeline
from app.api.schemas import JobEventSchema, JobSchema
from app.runner.lane import Lane
from app.runner.worker_pool import WorkerPool
from app.store import queries
from app.store.database import Database
from jobs import REGISTRY, JobContext, JobFailed, job_type
from tests.helpers import wait_for_chain
from tests.store.test_joins import submit

RUN_SECONDS = 0.002  # under the worker's "quick" bound: the lane keeps batching
_FAILED_ONCE: set[str] = set()  # target objects (ids restart in every test database)
_LOCK = threading.Lock()


@job_type("TAKES_2MS")
def takes_2ms(ctx: JobContext) -> None:
    until = time.monotonic() + RUN_SECONDS
    while time.monotonic() < until:
        pass


@job_type("FAILS_ONCE")
def fails_once(ctx: JobContext) -> None:
    with _LOCK:
        first = ctx.target_object not in _FAILED_ONCE
        _FAILED_ONCE.add(ctx.target_object)
    if first:
        raise JobFailed("first attempt fails")


def run_lane(db: Database, settings: Any, claim: int) -> list[int]:
    """One worker lane driven by hand: claim ``claim`` jobs in one batch, run them all,
    record them together. Returns the ids it ran, in order."""
    pool = WorkerPool(db, REGISTRY, settings)  # not started: this test is its only thread
    lane = Lane()
    assert pool._flush(lane, claim_limit=claim)
    ran = [c.id for c in lane.held]
    while lane.held:
        pool._work_step(lane)
    pool._flush(lane, claim_limit=0)
    return ran


def test_a_job_that_waited_in_its_batch_started_when_its_function_did(
    db: Database, settings: Any
) -> None:
    roots = [submit(db, {"targetObject": f"q{i}.TAKES_2MS"}) for i in range(4)]
    assert run_lane(db, settings, claim=4) == roots
    found = [queries.get_job(db, r) for r in roots]
    assert all(job is not None and job["status"] == "FINISHED" for job in found)
    jobs = [job for job in found if job is not None]
    [claimed] = {job["claimed_at"] for job in jobs}  # one claim for the whole batch
    for before, job in zip([None, *jobs], jobs, strict=False):
        assert job["started_at"] >= (before["finished_at"] if before else claimed)
        assert job["finished_at"] - job["started_at"] >= RUN_SECONDS
    # The last one waited behind three others: its start is theirs plus, not the claim.
    assert jobs[-1]["started_at"] - claimed >= 3 * RUN_SECONDS
    # Each job ended when its function returned, not when the batch was recorded.
    assert jobs[0]["finished_at"] < jobs[-1]["started_at"]

    last = jobs[-1]
    dumped = JobSchema().dump(last)
    assert dumped["claimedAt"] < dumped["startedAt"] < dumped["finishedAt"]  # ISO 8601 UTC
    events = queries.get_events(db, roots[-1])
    assert events is not None
    [end] = [e for e in events if e["reason"] == "finish"]
    assert (end["started_at"], end["finished_at"]) == (last["started_at"], last["finished_at"])
    assert JobEventSchema().dump(end)["startedAt"] == dumped["startedAt"]


def test_a_chain_hop_recorded_alone_carries_its_times(db: Database, settings: Any) -> None:
    """One finished job recorded alone: on PostgreSQL its finish, its event and the
    release of its child are one statement; the times travel in it too."""
    root = submit(db, {"targetObject": "a.TAKES_2MS", "nextJobs": [{"targetObject": "b.NOOP"}]})
    assert run_lane(db, settings, claim=1) == [root]
    job = queries.get_job(db, root)
    assert job is not None and job["status"] == "FINISHED"
    assert job["claimed_at"] <= job["started_at"]
    assert job["finished_at"] - job["started_at"] >= RUN_SECONDS
    events = queries.get_events(db, root)
    assert events is not None
    [end] = [e for e in events if e["reason"] == "finish"]
    assert (end["started_at"], end["finished_at"]) == (job["started_at"], job["finished_at"])
    [child] = job["next_job_ids"]
    released = queries.get_job(db, child)
    assert released is not None and released["status"] == "WAITING_FOR_DISPATCH"
    assert released["started_at"] is None and released["claimed_at"] is None


def test_every_attempt_of_a_retried_job_keeps_its_run(db: Database, pool: WorkerPool) -> None:
    root = submit(db, {"targetObject": f"{uuid.uuid4().hex}.FAILS_ONCE", "maxAttempts": 2})
    wait_for_chain(db, root)
    job = queries.get_job(db, root)
    events = queries.get_events(db, root)
    assert job is not None and events is not None
    assert (job["status"], job["attempt"]) == ("FINISHED", 2)
    first, second = timeline.attempts({**job, "events": events})
    assert (first.number, first.status, second.number, second.status) == (
        1,
        "FAILED",
        2,
        "FINISHED",
    )
    assert first.outcome == "WAITING_FOR_DISPATCH (automatic retry)"
    for attempt in (first, second):
        assert attempt.ready is not None and attempt.started is not None
        assert attempt.ended is not None
        assert attempt.ready <= attempt.claimed <= attempt.started <= attempt.ended
    assert first.ended is not None and second.ready is not None
    assert first.ended <= second.ready  # it ended, then became ready for its retry
    # The job's row holds the latest attempt.
    assert (job["started_at"], job["finished_at"]) == (second.started, second.ended)
    assert job["claimed_at"] == second.claimed
