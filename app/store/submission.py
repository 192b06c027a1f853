"""Storing a submitted tree: every node in one transaction, level by level."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, literal, null, select

from app.domain.join_plan import JoinPlan, plan_joins
from app.domain.payload import JobSpec
from app.domain.statuses import Status, Transition
from app.store import join_setup
from app.store.database import Database, now
from app.store.dialect import allocate_job_ids
from app.store.tables import job_events, jobs


def submit(db: Database, root: JobSpec, join_plans: list[JoinPlan] | None = None) -> int:
    """Store the tree: the root WAITING_FOR_DISPATCH, all others WAITING_FOR_PARENT.

    Returns the root job's id. Either the whole tree (with its joins) is stored or
    nothing is. ``join_plans`` defaults to planning the tree's joins here.
    """
    plans = plan_joins(root) if join_plans is None else join_plans
    root_id = db.write(lambda conn: _insert_tree(conn, root, plans)[0])
    db.notify_dispatchable()
    return root_id


def insert_tree(conn: Connection, root: JobSpec, plans: list[JoinPlan]) -> int:
    """Store the tree inside the caller's transaction (a schedule stores its fire record in
    the same one). The caller notifies workers after its commit."""
    return _insert_tree(conn, root, plans)[0]


def insert_tree_ids(
    conn: Connection, root: JobSpec, plans: list[JoinPlan]
) -> tuple[int, dict[int, int]]:
    """:func:`insert_tree`, also returning ``id(spec) -> job id`` of every stored node (a
    run maps its asset jobs back to their assets with it)."""
    return _insert_tree(conn, root, plans)


def attach_join_node(conn: Connection, parent: Any, spec: JobSpec, join_id: int) -> int:
    """Hang a JOIN node of ``join_id`` below ``parent`` (a job row of an earlier tree that
    has not ended): when that job ends, the node arrives at the join with its outcome, as
    if it had been submitted with it. The caller holds the parent's row lock, so the
    parent cannot end between its check and this insert. Returns the node's id."""
    t = now()
    node_id = allocate_job_ids(conn, 1)[0]
    position = conn.execute(
        select(func.count()).select_from(jobs).where(jobs.c.parent_id == parent.id)
    ).scalar_one()
    row = _row(
        spec, Status.WAITING_FOR_PARENT, parent.id, parent.root_id, position, parent.depth + 1, t
    )
    conn.execute(insert(jobs).values({**row, "id": node_id, "join_id": join_id}))
    conn.execute(
        insert(job_events).values(
            job_id=node_id,
            from_status=None,
            to_status=Status.WAITING_FOR_PARENT.value,
            attempt=0,
            at=t,
            reason=Transition.SUBMIT.value,
        )
    )
    return node_id


def _insert_tree(
    conn: Connection, root: JobSpec, plans: list[JoinPlan]
) -> tuple[int, dict[int, int]]:
    """Ids are allocated up front, so the whole tree is one multi-row insert."""
    t = now()
    reserved = allocate_job_ids(conn, sum(1 for _ in root.walk()))
    root_id = reserved[0]
    # Preparing joins may drop duplicate next jobs of a batch join; unused ids are harmless.
    join_of = join_setup.prepare(conn, plans, root_id, t)
    order = _breadth_first(root)
    ids = reserved[: len(order)]
    job_ids = {id(spec): job_id for job_id, (spec, _, _, _) in zip(ids, order, strict=True)}
    rows = [
        _row(
            spec,
            Status.WAITING_FOR_DISPATCH if parent is None else Status.WAITING_FOR_PARENT,
            None if parent is None else job_ids[id(parent)],
            root_id,
            position,
            depth,
            t,
        )
        | {"id": job_ids[id(spec)], "join_id": join_of.get(id(spec))}
        for spec, parent, position, depth in order
    ]
    conn.execute(insert(jobs), rows)
    # Each job's first event, written by the database from the rows just stored: a
    # 10,000-job tree costs one statement here instead of 10,000 parameter sets.
    conn.execute(
        insert(job_events).from_select(
            ["job_id", "from_status", "to_status", "attempt", "at", "reason"],
            select(
                jobs.c.id,
                null(),
                jobs.c.status,
                jobs.c.attempt,
                jobs.c.created_at,
                literal(Transition.SUBMIT.value),
            ).where(jobs.c.root_id == root_id),
        )
    )
    join_setup.set_owners(conn, plans, job_ids)
    return root_id, job_ids


def _breadth_first(root: JobSpec) -> list[tuple[JobSpec, JobSpec | None, int, int]]:
    """(node, parent, position among siblings, depth), parents before their children."""
    order: list[tuple[JobSpec, JobSpec | None, int, int]] = [(root, None, 0, 0)]
    index = 0
    while index < len(order):
        node, _, _, depth = order[index]
        order.extend((child, node, pos, depth + 1) for pos, child in enumerate(node.next_jobs))
        index += 1
    return order


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
