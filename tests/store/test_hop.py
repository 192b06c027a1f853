"""A chain's hop: a job's success, its next jobs' start and the worker's next claim.

On PostgreSQL one statement, its own transaction (app/store/hop.py); on SQLite the
ordinary transaction. Both must hand out the same jobs: due jobs first, then the job's
own next jobs up to the claim's limit, the rest left for any worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select

from app.domain.statuses import Status
from app.store import actions, claims, completion
from app.store import hop as hop_statement
from app.store.database import Database
from app.store.tables import job_events, jobs
from tests.runner.test_engine_chain import submit
from tests.store.test_db_faults import _terminate

RAN = completion.Outcome(failed=False, started_at=1.0, finished_at=2.0)


def claim_one(db: Database) -> claims.Claim:
    [held] = claims.claim(db, "w", lease_seconds=30)
    return held


def hop(db: Database, held: claims.Claim, limit: int) -> completion.Completion:
    """What a worker does when a quick job ends and it wants ``limit`` more."""
    done = [completion.Done(held.id, held.lease_token, RAN)]
    return completion.record_and_claim(db, done, owner="w", claim_limit=limit, defer_endings=True)


def status_of(db: Database, *job_ids: int) -> list[str]:
    with db.read() as conn:
        query = select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(job_ids))
        found = {row.id: row.status for row in conn.execute(query)}
    return [found[job_id] for job_id in job_ids]


def children_of(db: Database, parent_id: int) -> list[int]:
    with db.read() as conn:
        query = select(jobs.c.id).where(jobs.c.parent_id == parent_id).order_by(jobs.c.id)
        return list(conn.execute(query).scalars())


def events_of(db: Database, job_id: int) -> list[tuple[Any, ...]]:
    """A job's event rows: (from status, to status, attempt), in order."""
    with db.read() as conn:
        events = conn.execute(
            select(job_events.c.from_status, job_events.c.to_status, job_events.c.attempt)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.id)
        ).all()
    return [tuple(e) for e in events]


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, bool]]]:
    """Each statement sent while the block runs, and whether the connection was in
    autocommit (no BEGIN before it, no COMMIT after it)."""
    sent: list[tuple[str, bool]] = []

    def executed(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = " ".join(statement.split()[:2])
        sent.append((words, getattr(conn.connection.dbapi_connection, "autocommit", False)))

    event.listen(db.engine, "before_cursor_execute", executed)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", executed)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hop_is_one_statement_that_hands_the_worker_the_next_link(db: Database) -> None:
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    held = claim_one(db)
    with statements(db) as sent:
        recorded = hop(db, held, limit=1)
    # No BEGIN and no COMMIT round trip: the statement commits as it ends.
    assert sent == [("WITH finished", True)]
    [child] = children_of(db, root)
    assert recorded.statuses == {root: Status.FINISHED}
    assert [c.id for c in recorded.claims] == [child] and recorded.dispatchable == 0
    # The two moves of the state machine, in order: started by its parent, then claimed.
    assert events_of(db, child) == [
        (None, "WAITING_FOR_PARENT", 0),
        ("WAITING_FOR_PARENT", "WAITING_FOR_DISPATCH", 0),
        ("WAITING_FOR_DISPATCH", "PROCESSING", 1),
    ]


def test_jobs_due_before_the_hop_are_claimed_before_the_next_link(db: Database) -> None:
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    held = claim_one(db)
    waiting = submit(db, {"targetObject": "x.NOOP"})  # due while the chain's job ran
    recorded = hop(db, held, limit=1)
    [child] = children_of(db, root)
    assert [c.id for c in recorded.claims] == [waiting]
    assert status_of(db, child) == ["WAITING_FOR_DISPATCH"]
    assert recorded.dispatchable == 1  # announced: another worker may take it


def test_a_hop_takes_next_jobs_up_to_the_limit_and_starts_the_rest(db: Database) -> None:
    payload = {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": f"{i}.NOOP"} for i in "bcd"]}
    root = submit(db, payload)
    held = claim_one(db)
    recorded = hop(db, held, limit=2)
    first, second, third = children_of(db, root)
    assert [c.id for c in recorded.claims] == [first, second]
    assert status_of(db, first, second, third) == [
        "PROCESSING",
        "PROCESSING",
        "WAITING_FOR_DISPATCH",
    ]
    assert recorded.dispatchable == 1


def test_a_hop_without_the_lease_changes_nothing(db: Database) -> None:
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    held = claim_one(db)
    lost = claims.Claim(**{**held.__dict__, "lease_token": "someone else's"})
    with statements(db) as sent:
        recorded = hop(db, lost, limit=1)
    assert recorded.statuses == {root: None} and recorded.claims == []
    # Then read and found not held: the unread record is not tried a second time.
    assert [words for words, _ in sent].count("WITH finished") == (0 if db.is_sqlite else 1)
    assert status_of(db, root, *children_of(db, root)) == ["PROCESSING", "WAITING_FOR_PARENT"]


def test_a_hop_of_a_job_asked_to_cancel_is_recorded_the_long_way(db: Database) -> None:
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    held = claim_one(db)
    actions.cancel(db, root)  # a request: the running job is asked to stop
    recorded = hop(db, held, limit=1)
    [child] = children_of(db, root)
    assert recorded.statuses[root] == Status.CANCELLED
    assert recorded.claims == [] and status_of(db, child) == ["CANCELLED"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hop_whose_pooled_connection_died_is_recorded_once(db: Database) -> None:
    """The hop's statement fails on a connection that died while idle: nothing was
    written, and the hop runs again as an ordinary transaction on a new connection."""
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    held = claim_one(db)
    with db.engine.connect() as pooled:  # the connection the hop gets back from the pool
        pid = pooled.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    _terminate(db, pid)
    recorded = hop(db, held, limit=1)
    [child] = children_of(db, root)
    assert recorded.statuses == {root: Status.FINISHED}
    assert [c.id for c in recorded.claims] == [child]
    with db.read() as conn:
        reasons = list(conn.execute(select(job_events.c.reason)).scalars())
    assert reasons.count("finish") == 1 and reasons.count("claim") == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_hop_statement_is_converted_for_the_driver_once(db: Database) -> None:
    """psycopg converts a statement's placeholders once per text only below a length
    bound (app/store/dialect.py raises it): the hop's text must stay within it, or every
    hop pays for the conversion again."""
    from psycopg import _queries

    text = str(hop_statement.FINISH_AND_HAND_OFF.compile(dialect=db.engine.dialect))
    assert len(text.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
