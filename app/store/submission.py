"""Storing a submitted tree: every node in one transaction, level by level."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from app.join_plan import JoinPlan, plan_joins
from app.payload import JobSpec
from app.statuses import Status, Transition
from app.store import joins
from app.store.database import Database, now
from app.store.tables import jobs
from app.store.transitions import record_events


def submit(db: Database, root: JobSpec, join_plans: list[JoinPlan] | None = None) -> int:
    """Store the tree: the root WAITING_FOR_DISPATCH, all others WAITING_FOR_PARENT.

    Returns the root job's id. Either the whole tree (with its joins) is stored or
    nothing is. ``join_plans`` defaults to planning the tree's joins here.
    """
    plans = plan_joins(root) if join_plans is None else join_plans
    root_id = db.write(lambda conn: _insert_tree(conn, root, plans))
    db.notify_dispatchable()
    return root_id


def _insert_tree(conn: Connection, root: JobSpec, plans: list[JoinPlan]) -> int:
    t = now()
    root_row = _row(root, Status.WAITING_FOR_DISPATCH, None, 0, 0, 0, t)
    root_id = conn.execute(insert(jobs).values(root_row).returning(jobs.c.id)).scalar_one()
    conn.execute(update(jobs).where(jobs.c.id == root_id).values(root_id=root_id))
    record_events(conn, [(root_id, 0)], None, Status.WAITING_FOR_DISPATCH, t, Transition.SUBMIT)
    join_of = joins.prepare(conn, plans, root_id, t)
    job_ids: dict[int, int] = {id(root): root_id}

    level: list[tuple[int, JobSpec]] = [(root_id, root)]
    depth = 0
    while level:
        depth += 1
        children = [
            (child, parent_id, position)
            for parent_id, parent in level
            for position, child in enumerate(parent.next_jobs)
        ]
        if not children:
            break
        rows = [
            _row(spec, Status.WAITING_FOR_PARENT, parent_id, root_id, position, depth, t)
            | {"join_id": join_of.get(id(spec))}
            for spec, parent_id, position in children
        ]
        ids = (
            conn.execute(insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), rows)
            .scalars()
            .all()
        )
        record_events(
            conn, ((i, 0) for i in ids), None, Status.WAITING_FOR_PARENT, t, Transition.SUBMIT
        )
        level = [(job_id, spec) for job_id, (spec, _, _) in zip(ids, children, strict=True)]
        job_ids.update((id(spec), job_id) for job_id, spec in level)
    joins.set_owners(conn, plans, job_ids)
    return root_id


def _row(
    spec: JobSpec,
    status: Status,
    parent_id: int | None,
    root_id: int,
    position: int,
    depth: int,
    t: float,
) -> dict[str, Any]:
    return {
        "root_id": root_id,
        "parent_id": parent_id,
        "position": position,
        "depth": depth,
        "target_object": spec.target_object,
        "job_type": spec.job_type,
        "target_id": spec.target_id,
        "parameters": spec.parameters,
        "execute_on_error": spec.execute_on_error,
        "max_attempts": spec.max_attempts,
        "timeout_seconds": spec.timeout_seconds,
        "status": status.value,
        "attempt": 0,
        "attempt_floor": 0,
        "run_after": t,
        "cancel_requested": False,
        "created_at": t,
        "updated_at": t,
    }
