"""What a join's firing starts goes to the worker whose claim decided it, when its claim
has room and no job due before it is passed over (app/store/firing.py); else it is left
for any worker. Both stores hand out the same jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.store import claims, completion, warm
from app.store.database import Database
from app.store.schema import upgrade
from app.store.tables import jobs
from tests.conftest import throwaway_postgres
from tests.store.test_hop import events_of, statements
from tests.store.test_joins import fan_in, submit, the_join

RAN = completion.Outcome(failed=False, started_at=1.0, finished_at=2.0)


def one_parent_arrived(db: Database) -> claims.Claim:
    """A two-parent join, one parent recorded (its node arrived): the other, claimed."""
    submit(db, fan_in(["P1", "P2"]))
    [root] = claims.claim(db, "w", lease_seconds=60)
    completion.finish(db, root.id, root.lease_token, RAN)
    first, second = claims.claim(db, "w", lease_seconds=60, limit=2)
    done = completion.Done(first.id, first.lease_token, RAN, joins_below=True)
    completion.record_and_claim(db, [done], owner="w", claim_limit=0)
    return second


def last_parent_recorded(db: Database, limit: int, due: int = 0) -> tuple[Any, list[int]]:
    """A two-parent join, one parent recorded; ``due`` independent jobs submitted while
    the other ran; then the other recorded by a worker that claims up to ``limit``.
    Returns its completion and the due jobs' ids."""
    second = one_parent_arrived(db)
    waiting = [submit(db, {"targetObject": f"x{i}.NOOP"}) for i in range(due)]
    done = completion.Done(second.id, second.lease_token, RAN, joins_below=True)
    recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=limit)
    return recorded, waiting


def the_next_job(db: Database) -> Any:
    with db.read() as conn:
        return conn.execute(
            select(jobs.c.id, jobs.c.status).where(jobs.c.target_object == "B.NOOP")
        ).one()


@pytest.mark.parametrize("limit", [1, 4])  # 1: the JOIN node takes no slot of the claim
def test_the_firing_hands_the_worker_what_it_starts(db: Database, limit: int) -> None:
    recorded, _ = last_parent_recorded(db, limit=limit)
    b = the_next_job(db)
    assert [c.id for c in recorded.claims] == [b.id] and b.status == "PROCESSING"
    assert recorded.dispatchable == 0
    # The state machine's two moves, in order: started by the join, then claimed.
    assert events_of(db, b.id) == [
        (None, "WAITING_FOR_PARENT", 0),
        ("WAITING_FOR_PARENT", "WAITING_FOR_DISPATCH", 0),
        ("WAITING_FOR_DISPATCH", "PROCESSING", 1),
    ]


def test_a_job_due_before_the_firing_is_claimed_first(db: Database) -> None:
    recorded, [waiting] = last_parent_recorded(db, limit=1, due=1)
    assert [c.id for c in recorded.claims] == [waiting]
    assert the_next_job(db).status == "WAITING_FOR_DISPATCH"
    # B is announced to idle workers: the claim of a job due before it does not hide it.
    assert recorded.dispatchable == 1


def test_a_full_claim_takes_the_next_job_after_the_due_ones(db: Database) -> None:
    recorded, [waiting] = last_parent_recorded(db, limit=2, due=1)
    assert {c.id for c in recorded.claims} == {waiting, the_next_job(db).id}
    assert recorded.dispatchable == 0


def test_a_worker_that_claims_nothing_leaves_it_for_any_worker(db: Database) -> None:
    recorded, _ = last_parent_recorded(db, limit=0)
    assert recorded.claims == [] and recorded.dispatchable == 1
    assert the_next_job(db).status == "WAITING_FOR_DISPATCH"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_firing_hands_over_in_its_own_statement(db: Database) -> None:
    """No claim runs after the decision: the statement that decides hands B over. The
    deciding transaction is two statements."""
    second = one_parent_arrived(db)
    with statements(db) as sent:
        done = completion.Done(second.id, second.lease_token, RAN, joins_below=True)
        recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=1)
    words = [w for w, _ in sent]
    # The hop (with the join's lock and the arrival row), then the firing; then COMMIT
    # (the nodes that waited end in a transaction after it).
    assert words[: words.index("WITH decided") + 1] == ["WITH finished", "WITH decided"]
    assert "WITH due" not in words
    assert [c.target_object for c in recorded.claims] == ["B.NOOP"]


@pytest.fixture
def one_connection() -> Iterator[Database]:
    """PostgreSQL through a pool that keeps one connection (every call here uses it)."""
    for url in throwaway_postgres("jobchain_firing"):
        db = Database(url, pool_size=1, listen_notify=False)
        upgrade(db)
        yield db
        db.dispose()


def test_a_connection_plans_the_firing_once(one_connection: Database) -> None:
    """The firing's statement is prepared on its first run on a connection and keeps one
    generic plan: three joins fired, three runs, no plan made for the values."""
    db = one_connection
    for _ in range(3):
        submit(db, fan_in(["P1"]))
        [root] = claims.claim(db, "w", lease_seconds=60)
        completion.finish(db, root.id, root.lease_token, RAN)
        [parent] = claims.claim(db, "w", lease_seconds=60)
        done = completion.Done(parent.id, parent.lease_token, RAN, joins_below=True)
        fired = completion.record_and_claim(db, [done], owner="w", claim_limit=1)
        assert [c.target_object for c in fired.claims] == ["B.NOOP"]
    with db.read() as conn:
        [plans] = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE starts_with(statement, 'WITH decided AS')"
        ).all()
    assert tuple(plans) == (3, 0)


def test_a_due_node_and_a_handed_node_of_one_join_both_count(db: Database) -> None:
    """The recording of the last parent claims the other parent's JOIN node (due: that
    parent was recorded without claiming) and is handed its own node, of the same join:
    each arrival row is written once and counted once, and the join fires."""
    submit(db, fan_in(["P1", "P2"]))
    [root] = claims.claim(db, "w", lease_seconds=60)
    completion.finish(db, root.id, root.lease_token, RAN)
    first, second = claims.claim(db, "w", lease_seconds=60, limit=2)
    completion.finish(db, first.id, first.lease_token, RAN)  # its node is left due
    done = completion.Done(second.id, second.lease_token, RAN, joins_below=True)
    recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=4)
    join = the_join(db)
    assert join["state"] == "FIRED" and len(join["arrivals"]) == 2
    assert [c.target_object for c in recorded.claims] == ["B.NOOP"]


def test_a_worker_prepares_the_joins_statements_at_start(one_connection: Database) -> None:
    """warm.warm_up (run as a worker pool starts): the arriving hop and the firing are
    prepared on the connection, and nothing was written."""
    warm.warm_up(one_connection)
    with one_connection.read() as conn:
        prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").all()
        events = conn.exec_driver_sql("SELECT count(*) FROM job_events").scalar()
    starts = sorted(" ".join(row.statement.split()[:2]) for row in prepared)
    assert starts == ["WITH decided", "WITH finished"] and events == 0
