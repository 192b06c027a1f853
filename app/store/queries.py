"""Read-only questions about jobs, each one short transaction with indexed lookups."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from app.store.database import Database
from app.store.tables import job_events, job_logs, jobs

JOB_COLUMNS = [c for c in jobs.c if c.name not in {"lease_token"}]


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    target_object: str | None = None
    root_id: int | None = None
    job_type: str | None = None


def get_job(db: Database, job_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(*JOB_COLUMNS).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return None
        job = dict(row)
        job["next_job_ids"] = list(
            conn.execute(
                select(jobs.c.id).where(jobs.c.parent_id == job_id).order_by(jobs.c.position)
            ).scalars()
        )
        return job


def list_jobs(
    db: Database, where: JobFilter, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; keyset pagination on id, so page N costs the same as page 1."""
    query = select(*JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit + 1)
    if where.status:
        query = query.where(jobs.c.status == where.status)
    if where.target_object:
        query = query.where(jobs.c.target_object == where.target_object)
    if where.root_id is not None:
        query = query.where(jobs.c.root_id == where.root_id)
    if where.job_type:
        query = query.where(jobs.c.job_type == where.job_type)
    if before_id is not None:
        query = query.where(jobs.c.id < before_id)
    with db.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        _attach_next_job_ids(conn, rows[:limit])
    more = len(rows) > limit
    page = rows[:limit]
    return page, (page[-1]["id"] if more and page else None)


def get_tree(db: Database, job_id: int) -> dict[str, Any] | None:
    """The job with its descendants nested under ``next_jobs``."""
    with db.read() as conn:
        root_id = conn.execute(select(jobs.c.root_id).where(jobs.c.id == job_id)).scalar()
        if root_id is None:
            return None
        rows = [
            dict(r)
            for r in conn.execute(
                select(*JOB_COLUMNS)
                .where(jobs.c.root_id == root_id)
                .order_by(jobs.c.depth, jobs.c.parent_id, jobs.c.position)
            ).mappings()
        ]
    by_id = {row["id"]: row for row in rows}
    children: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["parent_id"] is not None:
            children[row["parent_id"]].append(row)
    for row in rows:
        row["next_jobs"] = children.get(row["id"], [])
        row["next_job_ids"] = [c["id"] for c in row["next_jobs"]]
    return by_id[job_id]


def get_events(db: Database, job_id: int) -> list[dict[str, Any]] | None:
    with db.read() as conn:
        if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first() is None:
            return None
        return [
            dict(r)
            for r in conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            ).mappings()
        ]


def get_log(db: Database, job_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first() is None:
            return None
        row = conn.execute(select(job_logs).where(job_logs.c.job_id == job_id)).first()
    text = row.text if row else ""
    return {
        "job_id": job_id,
        "text": text,
        "lines": text.splitlines(),
        "dropped_bytes": row.dropped_bytes if row else 0,
    }


def count_by_status(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
    return {status: count for status, count in rows}


def _attach_next_job_ids(conn: Connection, rows: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in rows]
    children: dict[int, list[int]] = defaultdict(list)
    if ids:
        for child_id, parent_id in conn.execute(
            select(jobs.c.id, jobs.c.parent_id)
            .where(jobs.c.parent_id.in_(ids))
            .order_by(jobs.c.position)
        ):
            children[parent_id].append(child_id)
    for row in rows:
        row["next_job_ids"] = children.get(row["id"], [])
