"""Real concurrency against SQLite and PostgreSQL: threads (and processes) lined up with
barriers race for the same jobs; every race must have exactly one winner and leave a
consistent tree and event log behind."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from app.domain.statuses import Status
from app.store import actions, claims, completion, recovery
from app.store.claims import Claim
from app.store.database import Database
from app.store.tables import job_events, jobs
from tests.runner.test_engine_chain import submit
from tests.store.test_lifecycle import (
    BOOM,
    EXPIRED,
    LEASE,
    OK,
    assert_histories_consistent,
    claim_job,
    history,
    ids_by_target,
    node,
    status,
    statuses,
)

JOIN_TIMEOUT = 60.0


def race(*fns: Callable[[], Any], rotate: int = 0) -> list[Any]:
    """Run ``fns`` in threads released together by a barrier; returns each one's result,
    or the exception it raised.

    The thread that arrives last at a barrier runs on without being woken, so it tends to
    win; ``rotate`` changes which one that is (vary it between rounds to see every order).
    """
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def run(index: int, fn: Callable[[], Any]) -> None:
        barrier.wait(JOIN_TIMEOUT)
        try:
            results[index] = fn()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    shift = rotate % len(threads)
    for thread in threads[shift:] + threads[:shift]:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return results


def count_events(db: Database, job_id: int, reason: str) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(job_events)
                .where(job_events.c.job_id == job_id, job_events.c.reason == reason)
            ).scalar_one()
        )


def waiting_for_dispatch(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.status == Status.WAITING_FOR_DISPATCH.value)
            ).scalar_one()
        )


def claim_until_empty(db: Database, owner: str, limit: int) -> list[Claim]:
    """Claim until nothing is left to claim (a skip-locked miss is retried)."""
    taken: list[Claim] = []
    while True:
        claimed_now = claims.claim(db, owner, LEASE, limit=limit)
        assert len(claimed_now) <= limit, f"asked for {limit} jobs, got {len(claimed_now)}"
        taken.extend(claimed_now)
        if not claimed_now and waiting_for_dispatch(db) == 0:
            return taken


# -- claiming -----------------------------------------------------------------------------


def test_concurrent_claims_take_every_job_exactly_once(db: Database) -> None:
    total = 300
    ids = [submit(db, node(f"{i}.NOOP")) for i in range(total)]
    per_thread = race(*[partial(claim_until_empty, db, f"worker-{i}", 1 + i % 3) for i in range(8)])
    for result in per_thread:
        assert not isinstance(result, Exception), result
    claimed_now = [c for taken in per_thread for c in taken]
    claimed = Counter(c.id for c in claimed_now)
    assert [job_id for job_id, n in claimed.items() if n > 1] == []
    assert sorted(claimed) == ids
    assert all(c.attempt == 1 for c in claimed_now)
    with db.read() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.status, jobs.c.lease_token)).all()
        claim_events = conn.execute(
            select(func.count()).select_from(job_events).where(job_events.c.reason == "claim")
        ).scalar_one()
    token_of = {c.id: c.lease_token for c in claimed_now}
    assert {r.status for r in rows} == {"PROCESSING"}
    assert all(r.lease_token == token_of[r.id] for r in rows)
    assert claim_events == total


# -- finishing ----------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["same outcome", "other outcome"])
def test_double_finish_with_the_same_token_has_one_winner(db: Database, second: str) -> None:
    for round_ in range(10):
        root = submit(
            db,
            node("1.NOOP", node("a.NOOP"), node("b.NOOP"), node("err.NOOP", executeOnError=True)),
        )
        ids = ids_by_target(db, root)
        token = claim_job(db, root).lease_token
        other = OK if second == "same outcome" else BOOM
        results = race(
            partial(completion.finish, db, root, token, OK),
            partial(completion.finish, db, root, token, other),
            rotate=round_,
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert status(db, root) == winners[0]
        assert sum(count_events(db, root, reason) for reason in ("finish", "fail")) == 1
        children = [ids["a.NOOP"], ids["b.NOOP"], ids["err.NOOP"]]
        if winners[0] == Status.FINISHED:
            for child in children:
                assert status(db, child) == "WAITING_FOR_DISPATCH"
                assert count_events(db, child, "parent finished") == 1
        else:
            assert statuses(db, ids) == {
                "1.NOOP": "FAILED",
                "a.NOOP": "SKIPPED",
                "b.NOOP": "SKIPPED",
                "err.NOOP": "WAITING_FOR_DISPATCH",
            }
            assert count_events(db, ids["err.NOOP"], "parent failed") == 1
            assert count_events(db, ids["a.NOOP"], "skip") == 1
        # Drain what was released so the next round claims its own root.
        for child in children:
            if status(db, child) == "WAITING_FOR_DISPATCH":
                actions.cancel(db, child)
    assert_histories_consistent(db)


def test_cancel_racing_finish_never_leaves_a_mixed_tree(db: Database) -> None:
    seen: Counter[str] = Counter()
    for round_ in range(30):
        root = submit(
            db,
            node(
                "1.NOOP",
                node("a.NOOP", node("b.NOOP")),
                node("err.NOOP", executeOnError=True),
            ),
        )
        ids = ids_by_target(db, root)
        token = claim_job(db, root).lease_token
        cancelled, finished = race(
            partial(actions.cancel, db, root),
            partial(completion.finish, db, root, token, OK),
            rotate=round_,
        )
        end = statuses(db, ids)
        if end["1.NOOP"] == "CANCELLED":
            # The cancel came first: the finish found the request and obeyed it.
            assert cancelled == Status.PROCESSING
            assert finished == Status.CANCELLED
            assert end == {k: "CANCELLED" for k in ids}
        else:
            # The finish came first: the job had ended, the cancel was refused.
            assert isinstance(cancelled, actions.Conflict), cancelled
            assert finished == Status.FINISHED
            assert end == {
                "1.NOOP": "FINISHED",
                "a.NOOP": "WAITING_FOR_DISPATCH",
                "b.NOOP": "WAITING_FOR_PARENT",
                "err.NOOP": "WAITING_FOR_DISPATCH",
            }
            actions.cancel(db, ids["a.NOOP"])
            actions.cancel(db, ids["err.NOOP"])
        seen[end["1.NOOP"]] += 1
    assert sum(seen.values()) == 30
    assert_histories_consistent(db)


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_reapers_racing_a_late_finish_act_once(db: Database, max_attempts: int) -> None:
    for round_ in range(15):
        root = submit(
            db,
            node(
                "1.NOOP",
                node("a.NOOP"),
                node("err.NOOP", executeOnError=True),
                maxAttempts=max_attempts,
            ),
        )
        ids = ids_by_target(db, root)
        stale = claim_job(db, root, lease=EXPIRED, owner="vanished").lease_token
        reaped_1, reaped_2, finished = race(
            partial(recovery.reap_expired_leases, db),
            partial(recovery.reap_expired_leases, db),
            partial(completion.finish, db, root, stale, OK),
            rotate=round_,
        )
        assert not isinstance(reaped_1, Exception) and not isinstance(reaped_2, Exception)
        leaving = [h for h in history(db, root) if h[0] == "PROCESSING" and h[1] != "PROCESSING"]
        assert len(leaving) == 1, leaving
        end = statuses(db, ids)
        if finished == Status.FINISHED:
            assert reaped_1 + reaped_2 == 0
            assert end == {
                "1.NOOP": "FINISHED",
                "a.NOOP": "WAITING_FOR_DISPATCH",
                "err.NOOP": "WAITING_FOR_DISPATCH",
            }
            actions.cancel(db, ids["a.NOOP"])
        else:
            assert finished is None
            assert reaped_1 + reaped_2 == 1
            if max_attempts == 2:
                assert end == {
                    "1.NOOP": "WAITING_FOR_DISPATCH",
                    "a.NOOP": "WAITING_FOR_PARENT",
                    "err.NOOP": "WAITING_FOR_PARENT",
                }
                actions.cancel(db, root)
            else:
                assert end == {
                    "1.NOOP": "FAILED",
                    "a.NOOP": "SKIPPED",
                    "err.NOOP": "WAITING_FOR_DISPATCH",
                }
                assert count_events(db, ids["a.NOOP"], "skip") == 1
        if status(db, ids["err.NOOP"]) == "WAITING_FOR_DISPATCH":
            actions.cancel(db, ids["err.NOOP"])
    assert waiting_for_dispatch(db) == 0
    assert_histories_consistent(db)


# -- several processes --------------------------------------------------------------------


def _claim_in_process(url: str, owner: str, barrier: Any, results: Any) -> None:
    """Child process: claim from the shared database until nothing is left."""
    db = Database(url, pool_size=2)
    try:
        barrier.wait(JOIN_TIMEOUT)
        results.put((owner, [c.id for c in claim_until_empty(db, owner, limit=2)]))
    except BaseException as exc:
        results.put((owner, f"{type(exc).__name__}: {exc}"))
    finally:
        db.dispose()


def test_processes_sharing_a_database_never_claim_a_job_twice(db: Database) -> None:
    total = 200
    ids = [submit(db, node(f"{i}.NOOP")) for i in range(total)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_claim_in_process, args=(db.url, f"proc-{i}", barrier, results))
        for i in range(4)
    ]
    for process in processes:
        process.start()
    try:
        collected = dict(results.get(timeout=JOIN_TIMEOUT) for _ in processes)
    except queue.Empty:
        pytest.fail("a claiming process did not report")
    finally:
        for process in processes:
            process.join(JOIN_TIMEOUT)
            if process.is_alive():
                process.kill()
    for owner, claimed_ids in collected.items():
        assert isinstance(claimed_ids, list), f"{owner}: {claimed_ids}"
    claimed = Counter(job_id for claimed_ids in collected.values() for job_id in claimed_ids)
    assert [job_id for job_id, n in claimed.items() if n > 1] == []
    assert sorted(claimed) == ids
    with db.read() as conn:
        owners = dict(conn.execute(select(jobs.c.id, jobs.c.lease_owner)).all())
    for owner, claimed_ids in collected.items():
        assert all(owners[job_id] == owner for job_id in claimed_ids)
