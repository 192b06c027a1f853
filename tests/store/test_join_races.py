"""The join fires exactly once when all its parents end at the same moment.

No worker threads here: the test claims the jobs itself, then lines up one thread (or
process) per parent on a barrier. Each finishes its parent the way a worker does (record
the outcome, then claim in the same transaction), so each transaction claims a released
JOIN node and records its arrival: all the arrivals race.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import func, select

from app.domain.join_plan import plan_joins
from app.domain.statuses import Status
from app.store import actions, claims, completion, join_reads, submission
from app.store.database import Database
from app.store.tables import job_events, jobs
from tests.store.test_joins import spec

WIDTH = 50
REPETITIONS = 3


def wide_fan_in(width: int) -> dict[str, Any]:
    branches = [
        {"targetObject": f"A{i}.NOOP", "nextJobs": [{"targetObject": "race.JOIN"}]}
        for i in range(width)
    ]
    branches[-1]["nextJobs"][0]["nextJobs"] = [{"targetObject": "B.NOOP"}]
    return {"targetObject": "A.NOOP", "nextJobs": branches}


def claim_all(db: Database, count: int) -> list[claims.Claim]:
    claimed_now = claims.claim(db, "test", lease_seconds=60, limit=count)
    assert len(claimed_now) == count
    return claimed_now


def finish_together(db: Database, claims: list[claims.Claim]) -> list[claims.Claim]:
    """Finish every claimed parent at once, each claiming one job after it like a worker;
    returns what those transactions claimed for a thread to run (JOIN nodes arrive inside)."""
    barrier = threading.Barrier(len(claims))
    errors: list[BaseException] = []
    taken: list[claims.Claim] = []

    def run(claim: claims.Claim) -> None:
        try:
            barrier.wait(timeout=30)
            done = completion.Done(claim.id, claim.lease_token, completion.Outcome(failed=False))
            recorded_now = completion.record_and_claim(
                db, [done], owner="test", claim_limit=1, lease_seconds=60
            )
            taken.extend(recorded_now.claims)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return taken


def finish_in_turn(db: Database, claims: list[claims.Claim]) -> None:
    for claim in claims:
        completion.finish(db, claim.id, claim.lease_token, completion.Outcome(failed=False))


def b_releases(db: Database, root_id: int) -> tuple[str, int]:
    with db.read() as conn:
        b = conn.execute(
            select(jobs.c.id, jobs.c.status).where(
                jobs.c.root_id == root_id, jobs.c.target_object == "B.NOOP"
            )
        ).one()
        released = conn.execute(
            select(func.count()).where(
                job_events.c.job_id == b.id,
                job_events.c.to_status == Status.WAITING_FOR_DISPATCH.value,
            )
        ).scalar_one()
    return b.status, released


def race_once(db: Database) -> None:
    tree = spec(wide_fan_in(WIDTH))
    root_id = submission.submit(db, tree, plan_joins(tree))
    finish_in_turn(db, claim_all(db, 1))
    taken = finish_together(db, claim_all(db, WIDTH))  # the parents: their arrivals race
    assert {c.target_object for c in taken} <= {"B.NOOP"}, taken  # JOIN nodes never leave
    expected = Status.PROCESSING if taken else Status.WAITING_FOR_DISPATCH
    assert b_releases(db, root_id) == (expected.value, 1)
    [join] = [
        j for j in join_reads.list_joins(db, key="race", batch=None) if j["root_id"] == root_id
    ]
    assert join["state"] == "FIRED"
    assert len(join["arrivals"]) == WIDTH
    # Drain B so the next repetition's claims see only its own jobs.
    finish_in_turn(db, taken or claim_all(db, 1))


def test_fifty_simultaneous_arrivals_fire_once_in_every_repetition(db: Database) -> None:
    for _ in range(REPETITIONS):
        race_once(db)


def _finish_in_process(url: str, claims: list[tuple[int, str]], start: Any) -> None:
    db = Database(url)
    start.wait(30)
    for job_id, token in claims:
        done = completion.Done(job_id, token, completion.Outcome(failed=False))
        for claim in completion.record_and_claim(db, [done], owner="p", claim_limit=1).claims:
            completion.finish(db, claim.id, claim.lease_token, completion.Outcome(failed=False))
    db.dispose()


def test_arrivals_from_many_processes_fire_once(db: Database) -> None:
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        tree = spec(wide_fan_in(WIDTH))
        root_id = submission.submit(db, tree, plan_joins(tree))
        finish_in_turn(db, claim_all(db, 1))
        parents = [(c.id, c.lease_token) for c in claim_all(db, WIDTH)]
        start = ctx.Event()
        procs = [
            ctx.Process(target=_finish_in_process, args=(db.url, parents[i::4], start))
            for i in range(4)
        ]
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        # Whoever claimed B ran it; it was released once.
        assert b_releases(db, root_id) == (Status.FINISHED.value, 1)


# -- a retry racing its JOIN node's arrival ---------------------------------------------

RETRY_REPETITIONS = 100
OK = completion.Outcome(failed=False)


def retry_race_setup(db: Database) -> tuple[int, int]:
    """R -> [a1 -> k, a2 -> k -> B]: a1 finished and arrived, a2 failed; a2's JOIN node is
    released carrying FAILED and not yet claimed. Returns (root id, a2's id)."""
    payload = {
        "targetObject": "R.NOOP",
        "nextJobs": [
            {"targetObject": "a1.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
            {
                "targetObject": "a2.NOOP",
                "nextJobs": [{"targetObject": "k.JOIN", "nextJobs": [{"targetObject": "B.NOOP"}]}],
            },
        ],
    }
    tree = spec(payload)
    root_id = submission.submit(db, tree, plan_joins(tree))
    finish_in_turn(db, claim_all(db, 1))
    a1, a2 = claim_all(db, 2)
    completion.record_and_claim(  # a1 ends; its JOIN node is claimed and arrives in the same commit
        db, [completion.Done(a1.id, a1.lease_token, OK)], owner="t", claim_limit=1
    )
    completion.finish(db, a2.id, a2.lease_token, completion.Outcome(failed=True, message="no"))
    return root_id, a2.id


def drain(db: Database, root_id: int, taken: list[claims.Claim]) -> None:
    """Run the chain to its end: every job claimed finishes successfully."""
    pending = list(taken)
    for _ in range(20):
        finish_in_turn(db, pending)
        pending = claims.claim(db, "t", lease_seconds=60, limit=10)
        if not pending and b_releases(db, root_id)[0] == Status.FINISHED.value:
            return
    raise AssertionError(f"chain {root_id} did not end")


def check_retry_race(db: Database, root_id: int) -> None:
    assert b_releases(db, root_id) == (Status.FINISHED.value, 1)
    [join] = [j for j in join_reads.list_joins(db, key="k", batch=None) if j["root_id"] == root_id]
    assert join["state"] == "FIRED"
    assert sorted(a["parent_outcome"] for a in join["arrivals"]) == ["FINISHED", "FINISHED"]
    with db.read() as conn:
        nodes = conn.execute(
            select(jobs.c.status).where(jobs.c.root_id == root_id, jobs.c.join_id.is_not(None))
        ).scalars()
        assert list(nodes) == [Status.FINISHED.value] * 2


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together by a barrier; returns their results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = calls[index]()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_retry_racing_the_join_nodes_claim_rearms_it_in_threads(db: Database) -> None:
    for _ in range(RETRY_REPETITIONS):
        root_id, a2 = retry_race_setup(db)
        _, taken = at_once(
            partial(actions.retry, db, a2),
            partial(claims.claim, db, "racer", lease_seconds=60, limit=1),
        )
        drain(db, root_id, taken)
        check_retry_race(db, root_id)


def _claim_on_signal(url: str, rounds: int, go: Any, claimed: Any) -> None:
    db = Database(url)
    for _ in range(rounds):
        go.wait(timeout=60)
        claimed_now = claims.claim(db, "racer", lease_seconds=60, limit=1)
        claimed.put([(c.id, c.lease_token) for c in claimed_now])
    db.dispose()


def test_retry_racing_the_join_nodes_claim_rearms_it_across_processes(db: Database) -> None:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(2)
    claimed = ctx.Queue()
    proc = ctx.Process(target=_claim_on_signal, args=(db.url, RETRY_REPETITIONS, go, claimed))
    proc.start()
    try:
        for _ in range(RETRY_REPETITIONS):
            root_id, a2 = retry_race_setup(db)
            go.wait(timeout=60)
            actions.retry(db, a2)
            taken = [
                claims.Claim(
                    id=job_id,
                    root_id=root_id,
                    target_object="",
                    job_type="",
                    target_id=None,
                    parameters={},
                    attempt=0,
                    max_attempts=1,
                    timeout_seconds=None,
                    lease_token=token,
                )
                for job_id, token in claimed.get(timeout=60)
            ]
            drain(db, root_id, taken)
            check_retry_race(db, root_id)
    finally:
        proc.join(60)
    assert proc.exitcode == 0
