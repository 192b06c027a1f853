"""Retention on SQLite and PostgreSQL: old finished chains go with every row that belongs to
them; live, recent and join-sharing chains stay; each batch is bounded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, func, insert, select, update

from app.runner.housekeeping import start_housekeeping
from app.runner.worker_pool import WorkerPool
from app.store import queries, retention
from app.store.database import Database, now
from app.store.tables import (
    idempotency_keys,
    job_events,
    job_logs,
    jobs,
    join_arrivals,
    joins,
    schedule_fires,
    schedules,
)
from tests.helpers import flatten, wait_for_chain, wait_until
from tests.runner.test_engine_chain import submit

DAY = 86_400.0
RETENTION = 14 * DAY


def run(db: Database, payload: dict[str, Any]) -> int:
    root = submit(db, payload)
    wait_for_chain(db, root)
    return root


def run_to_join(db: Database, payload: dict[str, Any]) -> int:
    """Submit a chain whose batch JOIN node waits for another submission; return once the
    node arrived (it then waits, unfinished, for the join's decision)."""
    root = submit(db, payload)

    def arrived() -> bool:
        tree = queries.get_tree(db, root)
        assert tree is not None
        nodes = [n for n in flatten(tree) if n["job_type"] == "JOIN"]
        return all(n["status"] == "WAITING_FOR_PARENT" and n["message"] for n in nodes)

    wait_until(arrived, what=f"chain {root}'s JOIN node to arrive")
    return root


def age(db: Database, root: int, days: float = 20) -> None:
    """Move a chain's times into the past, as if it ran ``days`` ago."""
    shift = days * DAY
    db.write(
        lambda conn: conn.execute(
            update(jobs)
            .where(jobs.c.root_id == root)
            .values(
                created_at=jobs.c.created_at - shift,
                updated_at=jobs.c.updated_at - shift,
                finished_at=jobs.c.finished_at - shift,
            )
        )
    )


def rows(db: Database, root: int) -> dict[str, int]:
    """How many rows of each kind belong to the chain of ``root``."""
    with db.read() as conn:
        ids = select(jobs.c.id).where(jobs.c.root_id == root).scalar_subquery()
        join_ids = select(jobs.c.join_id).where(jobs.c.root_id == root).scalar_subquery()

        def count(table: Any, *where: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())

        return {
            "jobs": count(jobs, jobs.c.root_id == root),
            "events": count(job_events, job_events.c.job_id.in_(ids)),
            "logs": count(job_logs, job_logs.c.job_id.in_(ids)),
            "joins": count(joins, joins.c.id.in_(join_ids)),
            "arrivals": count(join_arrivals, join_arrivals.c.join_id.in_(join_ids)),
            "keys": count(idempotency_keys, idempotency_keys.c.job_id == root),
            "fires": count(schedule_fires, schedule_fires.c.root_job_id == root),
        }


def logged(text: str) -> dict[str, Any]:
    return {"targetObject": "SHELL", "parameters": {"command": ["echo", text]}}


def test_old_finished_chains_go_with_all_their_rows(db: Database, pool: WorkerPool) -> None:
    join = {"targetObject": "j.JOIN"}
    fan_in = {
        "targetObject": "root.NOOP",
        "nextJobs": [
            {"targetObject": "p0.NOOP", "nextJobs": [join]},
            {"targetObject": "p1.NOOP", "nextJobs": [{**join, "nextJobs": [logged("after")]}]},
        ],
    }
    old = run(db, {**logged("old"), "nextJobs": [fan_in]})
    recent = run(db, logged("recent"))
    age(db, old)
    db.write(lambda conn: attach_key_and_fires(conn, [old, recent], now()))
    before = {"old": rows(db, old), "recent": rows(db, recent)}
    assert all(before["old"].values()), before  # every kind of row is there to delete

    assert retention.purge_finished(db, RETENTION) == (1, before["old"]["jobs"])

    assert set(rows(db, old).values()) == {0}
    assert rows(db, recent) == before["recent"]
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(schedules)).scalar() == 1


def attach_key_and_fires(conn: Any, roots: list[int], at: float) -> None:
    """A schedule that fired each chain, and an Idempotency-Key for each."""
    schedule_id = conn.execute(
        insert(schedules).values(
            name="nightly",
            cron="0 3 * * *",
            timezone="UTC",
            payload={"targetObject": "NOOP"},
            enabled=True,
            created_at=at,
            updated_at=at,
        )
    ).inserted_primary_key[0]
    for offset, root in enumerate(roots):
        conn.execute(
            insert(schedule_fires).values(
                schedule_id=schedule_id, fire_time=at - offset, root_job_id=root, fired_at=at
            )
        )
        conn.execute(
            insert(idempotency_keys).values(
                key=f"key-{root}", body_hash="0" * 64, job_id=root, created_at=at
            )
        )


def test_live_recent_and_join_sharing_chains_stay(db: Database, pool: WorkerPool) -> None:
    def batch_node(batch: str, then: bool) -> dict[str, Any]:
        node: dict[str, Any] = {
            "targetObject": "m.JOIN",
            "parameters": {"batch": batch, "expect": 2},
        }
        if then:
            node["nextJobs"] = [{"targetObject": "report.NOOP"}]
        return node

    # A batch join still waiting for its second submission: its old first half stays.
    waiting = run_to_join(
        db, {"targetObject": "a.NOOP", "nextJobs": [batch_node("waiting", False)]}
    )
    # A fired batch join whose other half is recent: the old half stays with it.
    shared_old = run_to_join(
        db, {"targetObject": "b.NOOP", "nextJobs": [batch_node("shared", False)]}
    )
    shared_new = run(db, {"targetObject": "c.NOOP", "nextJobs": [batch_node("shared", True)]})
    wait_for_chain(db, shared_old)  # the join's decision ended its first half too
    # An old chain whose end is still ahead (its second job waits for a far-off retry).
    live = run(db, {"targetObject": "d.NOOP", "nextJobs": [{"targetObject": "e.NOOP"}]})
    for root in (waiting, shared_old, live):
        age(db, root)
    db.write(
        lambda conn: conn.execute(
            update(jobs)
            .where(jobs.c.root_id == live, jobs.c.parent_id.is_not(None))
            .values(status="WAITING_FOR_DISPATCH", run_after=now() + DAY, finished_at=None)
        )
    )
    before = {root: rows(db, root) for root in (waiting, shared_old, shared_new, live)}

    assert retention.purge_finished(db, RETENTION) == (0, 0)

    assert {root: rows(db, root) for root in before} == before


def test_chains_sharing_a_join_go_together_in_bounded_batches(
    db: Database, pool: WorkerPool
) -> None:
    node = {"targetObject": "m.JOIN", "parameters": {"batch": "2024-03", "expect": 2}}
    first = run_to_join(db, {"targetObject": "sales.NOOP", "nextJobs": [node]})
    singles = [run(db, {"targetObject": f"s{i}.NOOP"}) for i in range(5)]
    then = {**node, "nextJobs": [{"targetObject": "profit.NOOP"}]}
    second = run(db, {"targetObject": "expenses.NOOP", "nextJobs": [then]})
    wait_for_chain(db, first)
    for root in (first, *singles, second):
        age(db, root)
    deletes: list[int] = []

    @event.listens_for(db.engine, "after_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM jobs "):
            deletes.append(cursor.rowcount)

    try:
        chains, _ = retention.purge_finished(db, RETENTION, batch_chains=2)
    finally:
        event.remove(db.engine, "after_cursor_execute", _count)

    assert chains == 7
    # The join's two chains went in one batch although they were found in different ones.
    assert rows(db, first)["jobs"] == rows(db, second)["jobs"] == 0
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(joins)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(jobs)).scalar() == 0
    # Batches of 2 chains: the first pulled in the join's other chain (2 + 1 + 3 jobs).
    assert deletes == [6, 2, 2]


def test_housekeeping_purges_only_when_retention_is_set(db: Database) -> None:
    for days, scheduled in ((14.0, True), (0.0, False)):
        scheduler = start_housekeeping(db, 60, retention_days=days)
        try:
            assert ("purge_finished_chains" in scheduler.tasks) == scheduled
        finally:
            scheduler.shutdown(wait=False)


def test_ids_of_purged_chains_are_never_issued_again(db: Database, pool: WorkerPool) -> None:
    """SQLite would hand out max(id) + 1 again once the newest chains are gone; AUTOINCREMENT
    (and PostgreSQL's sequences) go on above every id ever issued: jobs, events, joins."""
    join = {"targetObject": "j.JOIN"}
    chain = {
        "targetObject": "root.NOOP",
        "nextJobs": [{"targetObject": f"p{i}.NOOP", "nextJobs": [join]} for i in (0, 1)],
    }
    kept = run(db, chain)
    purged = [run(db, chain) for _ in range(3)]
    # The first chain stays (its JOIN nodes wait for a far-off retry); the newer ones go.
    db.write(
        lambda conn: conn.execute(
            update(jobs)
            .where(jobs.c.root_id == kept, jobs.c.join_id.is_not(None))
            .values(status="WAITING_FOR_DISPATCH", run_after=now() + DAY, finished_at=None)
        )
    )
    for root in (kept, *purged):
        age(db, root)
    issued = {name: max(ids) for name, ids in ids_of(db, [kept, *purged]).items()}

    assert retention.purge_finished(db, RETENTION) == (3, 3 * rows(db, kept)["jobs"])
    # What is left would make max(id) + 1 an id already given out.
    assert max(ids_of(db, [kept])["jobs"]) < issued["jobs"]

    again = [submit(db, chain) for _ in range(2)]

    for name, ids in ids_of(db, again).items():
        assert ids and min(ids) > issued[name], (name, sorted(ids), issued[name])


def ids_of(db: Database, roots: list[int]) -> dict[str, set[int]]:
    """The ids of the jobs, events and joins of the chains of ``roots``."""
    with db.read() as conn:
        job_ids = select(jobs.c.id).where(jobs.c.root_id.in_(roots))
        join_ids = select(jobs.c.join_id).where(jobs.c.root_id.in_(roots))
        return {
            "jobs": set(conn.execute(job_ids).scalars()),
            "job_events": set(
                conn.execute(
                    select(job_events.c.id).where(job_events.c.job_id.in_(job_ids))
                ).scalars()
            ),
            "joins": set(
                conn.execute(select(joins.c.id).where(joins.c.id.in_(join_ids))).scalars()
            ),
        }
