"""A worker's claim that decides a join commits the decision and claims what the join
starts first; the deciding node (still held) and the nodes that waited end in the worker's
next transaction (app/store/join_endings.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from app.domain.statuses import Status
from app.store import actions, claims, completion, recovery
from app.store.database import Database
from app.store.tables import job_events, jobs
from tests.store.test_join_claims import claim, node_below
from tests.store.test_joins import fan_in, submit, the_join

OK = completion.Outcome(failed=False)
FAILED = completion.Outcome(failed=True, message="boom")


def parents_claimed(db: Database, parents: list[str]) -> list[claims.Claim]:
    submit(db, fan_in(parents))
    [root] = claim(db, 1)
    completion.finish(db, root.id, root.lease_token, OK)
    return claim(db, len(parents))


def record(
    db: Database,
    job: claims.Claim,
    outcome: completion.Outcome = OK,
    end_first: list[Any] | None = None,
) -> completion.Completion:
    """Record ``job`` as a worker does: claim one more, carry the decisions' endings."""
    done = completion.Done(job.id, job.lease_token, outcome, joins_below=job.joins_below)
    return completion.record_and_claim(
        db, [done], owner="w", claim_limit=1, end_first=end_first or [], defer_endings=True
    )


def status(db: Database, job_id: int) -> str:
    with db.read() as conn:
        return str(conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one())


def b_jobs(db: Database) -> list[Any]:
    with db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.target_object == "B.NOOP")).all()


def test_the_job_a_join_starts_is_claimed_before_the_waiting_nodes_end(db: Database) -> None:
    first, second = parents_claimed(db, ["P1", "P2"])
    waiting = node_below(db, first.id).id
    assert record(db, first).claims == []
    assert status(db, waiting) == Status.WAITING_FOR_PARENT.value
    deciding = record(db, second)
    [b] = deciding.claims
    assert b.target_object == "B.NOOP"
    assert the_join(db)["state"] == "FIRED"
    # Decided and B claimed in that commit; the nodes end in the worker's next one.
    [decided] = deciding.decided
    assert status(db, decided.node_id) == Status.PROCESSING.value
    assert status(db, waiting) == Status.WAITING_FOR_PARENT.value
    after = record(db, b, end_first=deciding.decided)
    assert after.statuses == {b.id: Status.FINISHED}
    assert status(db, decided.node_id) == Status.FINISHED.value
    assert status(db, waiting) == Status.FINISHED.value
    with db.read() as conn:
        messages = dict(
            conn.execute(select(jobs.c.id, jobs.c.message).where(jobs.c.job_type == "JOIN")).all()
        )
    assert messages[decided.node_id] == (
        "arrival 2 of 2 at join 'profit' (parent FINISHED); join FIRED"
    )
    assert messages[waiting] == "join 'profit' FIRED"


def test_a_caller_that_does_not_carry_them_has_them_ended_at_once(db: Database) -> None:
    first, second = parents_claimed(db, ["P1", "P2"])
    for job in (first, second):
        done = completion.Done(job.id, job.lease_token, OK, joins_below=True)
        recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=1)
        assert recorded.decided == []
    assert {status(db, node_below(db, p.id).id) for p in (first, second)} == {"FINISHED"}


def test_a_vanished_deciders_node_ends_the_waiting_ones_when_it_arrives_again(
    db: Database,
) -> None:
    first, second = parents_claimed(db, ["P1", "P2"])
    record(db, first)
    deciding = record(db, second)
    [decided] = deciding.decided
    # Its worker dies before its next transaction: the node's lease runs out.
    with db.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == decided.node_id).values(lease_expires_at=0))
    assert recovery.reap_expired_leases(db) == 1
    claims.claim(db, "other", lease_seconds=60, limit=1)
    assert {status(db, node_below(db, p.id).id) for p in (first, second)} == {"FINISHED"}
    join = the_join(db)
    assert join["state"] == "FIRED"
    assert len(join["arrivals"]) == 2
    [b] = b_jobs(db)  # started once: the second arrival decided nothing
    with db.read() as conn:
        starts = conn.execute(
            select(func.count()).where(
                job_events.c.job_id == b.id,
                job_events.c.to_status == Status.WAITING_FOR_DISPATCH.value,
            )
        ).scalar_one()
    assert starts == 1


def test_a_retried_branch_takes_the_held_deciding_node_back(db: Database) -> None:
    first, second = parents_claimed(db, ["P1", "P2"])
    record(db, first)
    deciding = record(db, second, FAILED)  # all_success: the join fails
    assert deciding.claims == []
    assert the_join(db)["state"] == "FAILED"
    [decided] = deciding.decided
    # The failed parent is retried before the worker's next transaction.
    assert actions.retry(db, second.id) == Status.WAITING_FOR_DISPATCH
    assert status(db, decided.node_id) == Status.WAITING_FOR_PARENT.value
    assert the_join(db)["state"] == "WAITING"
    # The worker's late endings change nothing: the node is no longer its own.
    completion.record_and_claim(db, [], end_first=deciding.decided)
    assert status(db, decided.node_id) == Status.WAITING_FOR_PARENT.value
    assert status(db, node_below(db, first.id).id) == Status.WAITING_FOR_PARENT.value
    # The retried parent succeeds this time: the join fires, B starts once.
    [again] = claim(db, 1)
    assert again.id == second.id
    fired = record(db, again)
    assert the_join(db)["state"] == "FIRED"
    assert [c.target_object for c in fired.claims] == ["B.NOOP"]
    completion.record_and_claim(db, [], end_first=fired.decided)
    assert {status(db, node_below(db, p.id).id) for p in (first, second)} == {"FINISHED"}
