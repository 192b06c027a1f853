"""A claim never waits for a join row, and a job with a JOIN node below it is recorded with
its nodes' arrival (app/store/join_claims.py, claims.settle, joins.arrive_held)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, select, update

from app.domain.statuses import Status
from app.store import claims, completion, recovery
from app.store.database import Database
from app.store.tables import jobs, joins
from tests.helpers import wait_until
from tests.store.test_joins import fan_in, submit, the_join

OK = completion.Outcome(failed=False)


def claim(db: Database, count: int) -> list[claims.Claim]:
    taken = claims.claim(db, "test", lease_seconds=60, limit=count)
    assert len(taken) == count
    return taken


def parents_claimed(db: Database, width: int) -> list[claims.Claim]:
    """A fan-in of ``width`` parents, its root finished: the parents, claimed."""
    submit(db, fan_in([f"P{i}" for i in range(width)]))
    [root] = claim(db, 1)
    completion.finish(db, root.id, root.lease_token, OK)
    return claim(db, width)


def node_below(db: Database, parent_id: int) -> Any:
    with db.read() as conn:
        return conn.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.join_id).where(jobs.c.parent_id == parent_id)
        ).one()


def test_a_claim_says_which_jobs_have_a_join_node_below(db: Database) -> None:
    submit(db, {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "C.NOOP"}]})
    [root] = claim(db, 1)
    assert not root.joins_below
    completion.finish(db, root.id, root.lease_token, OK)
    [child] = claim(db, 1)
    assert not child.joins_below
    completion.finish(db, child.id, child.lease_token, OK)
    assert all(p.joins_below for p in parents_claimed(db, 2))


def test_a_job_with_a_join_node_below_is_recorded_with_its_arrival(db: Database) -> None:
    first, _ = parents_claimed(db, 2)
    done = completion.Done(first.id, first.lease_token, OK, joins_below=True)
    recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=0)
    assert recorded.claims == []
    # The same call claimed the JOIN node it released, and it arrived.
    assert node_below(db, first.id).status == Status.WAITING_FOR_PARENT.value
    assert len(the_join(db)["arrivals"]) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_arrival_that_starts_nothing_is_not_followed_by_another_claim(db: Database) -> None:
    """The hop that records a parent claims what is due and its JOIN node, locks the join
    and writes the node's arrival row; the arrival (1 of 2), whose counts are written
    with the node's wait in one more statement, starts nothing, so no second claim runs in
    that transaction. The arrival that fires the join hands the worker what it started,
    in the firing's statement: no claim after it either (app/store/firing.py)."""
    first, second = parents_claimed(db, 2)
    sent: list[str] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()[:2]))

    ran = completion.Outcome(failed=False, started_at=1.0, finished_at=2.0)
    event.listen(db.engine, "before_cursor_execute", executed)
    try:
        done = completion.Done(first.id, first.lease_token, ran, joins_below=True)
        completion.record_and_claim(db, [done], owner="w", claim_limit=16)
        # The hop also locks the join row and writes the arrival row (hop.py); the node's
        # wait and the join's counts: one more statement. No claim.
        assert sent == ["WITH finished", "WITH moved"]
        assert len(the_join(db)["arrivals"]) == 1
        done = completion.Done(second.id, second.lease_token, ran, joins_below=True)
        fired = completion.record_and_claim(db, [done], owner="w", claim_limit=16)
    finally:
        event.remove(db.engine, "before_cursor_execute", executed)
    assert "WITH due" not in sent and sent.count("WITH decided") == 1
    assert [c.target_object for c in fired.claims] == ["B.NOOP"] and fired.dispatchable == 0


def test_a_claim_does_not_wait_for_a_join_row_another_transaction_holds(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: no row locks to wait for")
    first, second = parents_claimed(db, 2)
    node = node_below(db, first.id)
    holder = db.engine.connect()
    held = holder.begin()
    holder.execute(select(joins.c.id).where(joins.c.id == node.join_id).with_for_update())
    done = completion.Done(first.id, first.lease_token, OK, joins_below=True)
    worker = threading.Thread(
        target=completion.record_and_claim, args=(db, [done]), kwargs={"owner": "w"}
    )
    worker.start()
    try:
        # The claim committed while the join row was held: the node is claimed, not arrived,
        # and its arrival waits (outside that transaction) for the row.
        wait_until(lambda: node_below(db, first.id).status == Status.PROCESSING.value)
        assert worker.is_alive()
        assert the_join(db)["arrivals"] == []
    finally:
        held.rollback()
        holder.close()
    worker.join(30)
    assert not worker.is_alive()
    assert node_below(db, first.id).status == Status.WAITING_FOR_PARENT.value
    assert len(the_join(db)["arrivals"]) == 1
    # The other branch arrives as usual and fires the join once.
    done = completion.Done(second.id, second.lease_token, OK, joins_below=True)
    completion.record_and_claim(db, [done], owner="w", claim_limit=1)
    assert the_join(db)["state"] == "FIRED"


def test_a_join_node_whose_worker_vanished_before_it_arrived_arrives_again(
    db: Database,
) -> None:
    first, _ = parents_claimed(db, 2)
    completion.finish(db, first.id, first.lease_token, OK)  # releases its JOIN node
    node = node_below(db, first.id)
    # As a claim that deferred the node's arrival leaves it if its process dies next.
    with db.engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == node.id)
            .values(
                status=Status.PROCESSING.value,
                attempt=jobs.c.attempt + 1,
                lease_token="gone",
                lease_owner="gone",
                lease_expires_at=0.0,
            )
        )
    assert recovery.reap_expired_leases(db) == 1
    assert node_below(db, first.id).status == Status.WAITING_FOR_DISPATCH.value
    claims.claim(db, "test", lease_seconds=60, limit=1)
    assert node_below(db, first.id).status == Status.WAITING_FOR_PARENT.value
    assert len(the_join(db)["arrivals"]) == 1
