"""Queries of the admin console: the filtered job list, status counts, a chain with its
joins and the times of its timeline.

Every query walks an index (tests check the plans with EXPLAIN QUERY PLAN), so the pages
stay fast with millions of jobs:

- The list is newest first by id and keyset-paginated: each filter has an ``(x, id)``
  index, and a page never counts or skips rows.
- A target object is the most selective filter: with one, only its index is used (the other
  conditions are written so no planner picks their index and walks, say, every FINISHED job
  looking for one target).
- A time range becomes an id range through the ``created_at`` index (ids are handed out
  in creation order; ``ID_SLACK_SECONDS`` covers transactions that commit out of order),
  and the exact ``created_at`` condition stays on the query.
- Free text in the message cannot use a b-tree index, and status and job type together have
  no index of their own. Such a search looks at no more than ``SCAN_WINDOW`` consecutive ids
  per page and says how far it got, so the cost of a page is bounded and the same on SQLite
  and PostgreSQL; the next page continues below that window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from app.domain.join_rules import WAITING
from app.domain.statuses import Status
from app.store.database import Database
from app.store.join_reads import NOT_STARTED
from app.store.tables import api_tokens, job_events, jobs, join_arrivals, joins

# Ids a search without an index of its own looks at per page (its cost bound).
SCAN_WINDOW = 50_000
# Status counts stop here: the cost of the counts is bounded, not the size of the table.
COUNT_CAP = 10_000
# Jobs committed out of creation order by at most this much still fall inside a time range.
ID_SLACK_SECONDS = 60.0

LIST_COLUMNS = [
    jobs.c.id,
    jobs.c.root_id,
    jobs.c.parent_id,
    jobs.c.target_object,
    jobs.c.job_type,
    jobs.c.status,
    jobs.c.attempt,
    jobs.c.attempt_floor,
    jobs.c.max_attempts,
    jobs.c.message,
    jobs.c.progress,
    jobs.c.created_at,
    jobs.c.claimed_at,
    jobs.c.started_at,
    jobs.c.finished_at,
]
TREE_COLUMNS = [
    *LIST_COLUMNS,
    jobs.c.depth,
    jobs.c.position,
    jobs.c.blocked_by,
    jobs.c.join_id,
    jobs.c.execute_on_error,
]


@dataclass(frozen=True)
class JobQuery:
    """What the jobs page filters by; every field is optional."""

    status: str | None = None
    job_type: str | None = None
    target_object: str | None = None
    text: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass
class JobPage:
    items: list[dict[str, Any]]
    # Pass back as ``before`` for the next (older) page; None on the last page.
    next_cursor: int | None
    # For a text search: the lowest id this page looked at (the search goes on below it).
    searched_to: int | None = None


@dataclass
class Chain:
    """A whole chain in display order (depth first), with its joins and arrivals."""

    root_id: int
    nodes: list[dict[str, Any]]
    joins: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(node["status"] not in _TERMINAL for node in self.nodes)


_TERMINAL = {s.value for s in (Status.FINISHED, Status.FAILED, Status.CANCELLED, Status.SKIPPED)}


def list_jobs(db: Database, query: JobQuery, limit: int, before: int | None) -> JobPage:
    """One page of jobs matching ``query`` with ids below ``before``, newest first."""
    with db.read() as conn:
        bounds = _id_bounds(conn, query)
        if bounds is None:
            return JobPage([], None)
        low, high = bounds
        top = before if high is None else min(before or high + 1, high + 1)
        statement = _filtered(select(*LIST_COLUMNS), query)
        if top is not None:
            statement = statement.where(jobs.c.id < top)
        floor = low
        windowed = _windowed(query)
        if windowed:
            if top is None:
                top = (conn.execute(select(func.max(jobs.c.id))).scalar() or 0) + 1
            floor = max(top - SCAN_WINDOW, low or 1)
        if floor is not None:
            statement = statement.where(jobs.c.id >= floor)
        statement = statement.order_by(jobs.c.id.desc()).limit(limit + 1)
        rows = [dict(r) for r in conn.execute(statement).mappings()]
    if len(rows) > limit:
        return JobPage(rows[:limit], rows[limit - 1]["id"], None)
    if windowed and floor is not None and floor > (low or 1):
        return JobPage(rows, floor, floor)  # nothing more in this window: continue below it
    return JobPage(rows, None, floor if windowed else None)


def _windowed(query: JobQuery) -> bool:
    """Whether no single index finds this query's jobs, so a page looks at a window."""
    both = bool(query.status and query.job_type and not query.target_object)
    return bool(query.text) or both


def status_counts(db: Database, since: float | None, until: float | None) -> dict[str, int]:
    """How many jobs are in each status (created within the range, if one is given).

    Counting stops at ``COUNT_CAP`` per status, so a count costs at most that many index
    entries however big the table is: a value above the cap means "more than COUNT_CAP".
    """
    query = JobQuery(since=since, until=until)
    counts: dict[str, int] = {}
    with db.read() as conn:
        bounds = _id_bounds(conn, query)
        if bounds is None:
            return counts
        low, high = bounds
        for status in Status:
            matching = _filtered(select(jobs.c.id), replace(query, status=status.value))
            if low is not None:
                matching = matching.where(jobs.c.id >= low)
            if high is not None:
                matching = matching.where(jobs.c.id <= high)
            capped = matching.limit(COUNT_CAP + 1).subquery()
            count = conn.execute(select(func.count()).select_from(capped)).scalar_one()
            if count:
                counts[status.value] = count
    return counts


def _filtered(statement: Select[Any], query: JobQuery) -> Select[Any]:
    # With a target object, `status || ''` keeps the planner on the target's index.
    status: ColumnElement[str] = jobs.c.status
    job_type: ColumnElement[str] = jobs.c.job_type
    if query.target_object:
        status, job_type = status.concat(""), job_type.concat("")
        statement = statement.where(jobs.c.target_object == query.target_object)
    if query.status:
        statement = statement.where(status == query.status)
    if query.job_type:
        statement = statement.where(job_type == query.job_type)
    if query.text:
        statement = statement.where(jobs.c.message.icontains(query.text, autoescape=True))
    if query.since is not None:
        statement = statement.where(jobs.c.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(jobs.c.created_at <= query.until)
    return statement


def _id_bounds(conn: Connection, query: JobQuery) -> tuple[int | None, int | None] | None:
    """The id range that holds every job of the time range; None if it holds none."""
    low = high = None
    if query.since is not None:
        low = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.created_at >= query.since - ID_SLACK_SECONDS)
            .order_by(jobs.c.created_at)
            .limit(1)
        ).scalar()
        if low is None:
            return None
    if query.until is not None:
        high = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.created_at <= query.until + ID_SLACK_SECONDS)
            .order_by(jobs.c.created_at.desc())
            .limit(1)
        ).scalar()
        if high is None:
            return None
    return low, high


# -- one chain --------------------------------------------------------------------------


def get_chain(db: Database, root_id: int) -> Chain | None:
    """The chain rooted at ``root_id`` (None if that is no root), nodes depth first, each
    with ``ready_at`` (when it last became ready to run) and ``events``: its moves, oldest
    first, from which the timeline draws every attempt."""
    with db.read() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(*TREE_COLUMNS).where(jobs.c.root_id == root_id).order_by(jobs.c.id)
            ).mappings()
        ]
        if not rows or rows[0]["id"] != root_id:
            return None
        events: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for event in conn.execute(
            select(*_TIMELINE_EVENT_COLUMNS)
            .select_from(job_events.join(jobs, jobs.c.id == job_events.c.job_id))
            .where(jobs.c.root_id == root_id)
            .order_by(job_events.c.job_id, job_events.c.id)
        ).mappings():
            events[event["job_id"]].append(dict(event))
        join_ids = sorted({r["join_id"] for r in rows if r["join_id"] is not None})
        found = _joins(conn, join_ids)
    for row in rows:
        row["events"] = events.get(row["id"], [])
        ready = [e["at"] for e in row["events"] if e["to_status"] == _READY]
        row["ready_at"] = max(ready) if ready else None
    return Chain(root_id, _depth_first(rows), found)


_READY = Status.WAITING_FOR_DISPATCH.value
_TIMELINE_EVENT_COLUMNS = (
    job_events.c.job_id,
    job_events.c.from_status,
    job_events.c.to_status,
    job_events.c.attempt,
    job_events.c.at,
    job_events.c.reason,
    job_events.c.started_at,
    job_events.c.finished_at,
)


def _joins(conn: Connection, join_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not join_ids:
        return {}
    found = {
        r["id"]: dict(r) | {"arrivals": []}
        for r in conn.execute(select(joins).where(joins.c.id.in_(join_ids))).mappings()
    }
    arrivals = conn.execute(
        select(join_arrivals)
        .where(join_arrivals.c.join_id.in_(join_ids))
        .order_by(join_arrivals.c.join_id, join_arrivals.c.at, join_arrivals.c.id)
    ).mappings()
    for arrival in arrivals:
        found[arrival["join_id"]]["arrivals"].append(dict(arrival))
    # What each decided join started, wherever it hangs: a join across submissions
    # continues below its owner node, which may be in another chain.
    owners = {
        j["owner_job_id"]: j
        for j in found.values()
        if j["owner_job_id"] is not None and j["state"] != WAITING
    }
    for join in found.values():
        join["started"] = []
    if not owners:
        return found
    started = conn.execute(
        select(jobs.c.id, jobs.c.root_id, jobs.c.parent_id, jobs.c.target_object, jobs.c.status)
        .where(jobs.c.parent_id.in_(list(owners)), jobs.c.status.not_in(NOT_STARTED))
        .order_by(jobs.c.parent_id, jobs.c.position)
    ).mappings()
    for job in started:
        owners[job["parent_id"]]["started"].append(dict(job))
    return found


def _depth_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in display order: each job followed by its subtree, siblings by position."""
    children: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        children[row["parent_id"]].append(row)
    for siblings in children.values():
        siblings.sort(key=lambda r: r["position"])
    ordered: list[dict[str, Any]] = []
    stack = list(reversed(children[None]))
    while stack:
        row = stack.pop()
        ordered.append(row)
        stack.extend(reversed(children.get(row["id"], [])))
    return ordered


def brief_jobs(db: Database, job_ids: list[int]) -> dict[int, dict[str, Any]]:
    """A few jobs by id (a job page's parent, children and root), for links with status."""
    if not job_ids:
        return {}
    with db.read() as conn:
        rows = conn.execute(select(*LIST_COLUMNS).where(jobs.c.id.in_(job_ids))).mappings()
        return {r["id"]: dict(r) for r in rows}


def session_token(db: Database, token_id: int) -> dict[str, Any] | None:
    """An active API token's name, role and stored hash: a console session is verified
    against it on every request (the hash never leaves the server)."""
    query = select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.token_hash).where(
        api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
    )
    with db.read() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None
