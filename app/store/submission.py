"""Storing a submitted tree: every node in one transaction, level by level."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from app.payload import JobSpec
from app.statuses import Status, Transition
from app.store.database import Database, now
from app.store.tables import jobs
from app.store.transitions import record_events


def submit(db: Database, root: JobSpec) -> int:
    """Store the tree: the root WAITING_FOR_DISPATCH, all others WAITING_FOR_PARENT.

    Returns the root job's id. Either the whole tree is stored or nothing is.
    """
    root_id = db.write(lambda conn: _insert_tree(conn, root))
    db.notify_dispatchable()
    return root_id


def _insert_tree(conn: Connection, root: JobSpec) -> int:
    t = now()
    root_row = _row(root, Status.WAITING_FOR_DISPATCH, None, 0, 0, 0, t)
    root_id = conn.execute(insert(jobs).values(root_row).returning(jobs.c.id)).scalar_one()
    conn.execute(update(jobs).where(jobs.c.id == root_id).values(root_id=root_id))
    record_events(conn, [(root_id, 0)], None, Status.WAITING_FOR_DISPATCH, t, Transition.SUBMIT)

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
