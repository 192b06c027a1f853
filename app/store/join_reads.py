"""Reading joins: a join with its arrivals, its JOIN nodes and the jobs it started."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from app.domain.join_rules import WAITING
from app.domain.statuses import Status
from app.store.database import Database
from app.store.tables import jobs, join_arrivals, joins

# A decided join's next jobs in these statuses were not started by it (skipped, cancelled).
NOT_STARTED = frozenset(
    {Status.WAITING_FOR_PARENT.value, Status.SKIPPED.value, Status.CANCELLED.value}
)


def get_join(db: Database, join_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(joins).where(joins.c.id == join_id)).mappings().first()
        if row is None:
            return None
        return _describe(conn, dict(row))


def list_joins(
    db: Database, key: str | None, batch: str | None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(joins).order_by(joins.c.id.desc()).limit(limit)
    if key is not None:
        query = query.where(joins.c.key == key)
    if batch is not None:
        query = query.where(joins.c.batch == batch)
    with db.read() as conn:
        return [_describe(conn, dict(row)) for row in conn.execute(query).mappings()]


def _describe(conn: Connection, join: dict[str, Any]) -> dict[str, Any]:
    join["arrivals"] = [
        dict(r)
        for r in conn.execute(
            select(join_arrivals)
            .where(join_arrivals.c.join_id == join["id"])
            .order_by(join_arrivals.c.at, join_arrivals.c.id)
        ).mappings()
    ]
    join["node_job_ids"] = list(
        conn.execute(
            select(jobs.c.id).where(jobs.c.join_id == join["id"]).order_by(jobs.c.id)
        ).scalars()
    )
    join["next_job_ids"] = []
    join["started_job_ids"] = []
    if join["owner_job_id"] is not None:
        children = conn.execute(
            select(jobs.c.id, jobs.c.status)
            .where(jobs.c.parent_id == join["owner_job_id"])
            .order_by(jobs.c.position)
        ).all()
        join["next_job_ids"] = [c.id for c in children]
        if join["state"] != WAITING:
            join["started_job_ids"] = [c.id for c in children if c.status not in NOT_STARTED]
    return join
