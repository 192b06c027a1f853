"""A JOIN node's arrival row: one per node and join, its outcome replaced if it arrives
again (its parent was retried, or the node that decided arrives once more).

The caller holds the join row's lock (app/store/joins.py), or takes it with the arrival
(:func:`lock_and_record`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, Connection, Float, Row, String, bindparam, func, select, update

from app.domain.join_plan import skip_reason
from app.domain.statuses import Status
from app.store.tables import jobs, join_arrivals, joins

# Parameter names must differ from the columns an UPDATE sets or filters on.
_ARRIVAL = (join_arrivals.c.join_id == bindparam("b_join")) & (
    join_arrivals.c.job_id == bindparam("b_job")
)
_PREVIOUS_OUTCOME = select(join_arrivals.c.parent_outcome).where(_ARRIVAL)
_UPDATE_ARRIVAL = (
    update(join_arrivals)
    .where(_ARRIVAL)
    .values(parent_outcome=bindparam("outcome"), at=bindparam("at"))
)


def previous_outcome(conn: Connection, join_id: int, node_id: int) -> str | None:
    """The outcome the node's recorded arrival carries, if it arrived."""
    found: str | None = conn.execute(
        _PREVIOUS_OUTCOME, {"b_join": join_id, "b_job": node_id}
    ).scalar()
    return found


def record(conn: Connection, join_id: int, node: Row[Any], outcome: str, at: float) -> str | None:
    """Insert or update the node's arrival; returns the outcome it replaced, if any."""
    row = {
        "join_id": join_id,
        "job_id": node.id,
        "parent_job_id": node.parent_id,
        "parent_outcome": outcome,
        "at": at,
    }
    if conn.execute(_new_arrival(conn.dialect.name), row).first() is not None:
        return None  # the usual case: one statement
    previous = previous_outcome(conn, join_id, node.id)
    key = {"b_join": join_id, "b_job": node.id}
    conn.execute(_UPDATE_ARRIVAL, {**key, "outcome": outcome, "at": at})
    return previous


@functools.cache
def _new_arrival(dialect: str) -> Any:
    """INSERT the arrival unless the node arrived already (then nothing returns). The
    dialect's module is imported only for its own database."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as module
    else:
        from sqlalchemy.dialects import sqlite as module  # type: ignore[no-redef]
    stmt = module.insert(join_arrivals).on_conflict_do_nothing(index_elements=["join_id", "job_id"])
    return stmt.returning(join_arrivals.c.id)


def carried_outcome(node: Row[Any]) -> str:
    """The outcome a released JOIN node carries to its join (its parent's end, or an
    upstream join's decision); a node claimed before it was written carries FINISHED."""
    return node.arrival_outcome or Status.FINISHED.value


def lock_and_record(conn: Connection, node: Row[Any], at: float) -> Row[Any] | None:
    """PostgreSQL, one JOIN node arriving: lock its join row unless another transaction
    holds it (``SKIP LOCKED``: the caller then defers the node) and insert its arrival row,
    one statement for what were two. Returns the join row, its ``arrival_of`` the node's id
    when the arrival row is new (None: it arrived before), or None when the join is busy.

    It also makes the rest of the transaction use generic plans for its prepared
    statements (``SET LOCAL plan_cache_mode``): an arrival may fire its join, and the
    firing's statement, prepared on its first run on a connection, would otherwise be
    planned anew on each of its first five runs there (app/store/firing.py)."""
    outcome = carried_outcome(node)
    params = {"join": node.join_id, "node": node.id, "parent": node.parent_id, "outcome": outcome}
    return conn.execute(_lock_and_insert(), {**params, "at": at}).first()


# The rest of the transaction plans its prepared statements once (firing.py).
GENERIC_PLANS = func.set_config("plan_cache_mode", "force_generic_plan", True).label(
    "generic_plans"
)


def lock_and_insert(join: Any, arrival: Callable[[Any], Any]) -> tuple[Any, Any]:
    """PostgreSQL: the CTEs that lock the join rows ``join`` selects (a condition on
    ``joins``; rows another transaction holds are skipped) and insert the arrival rows
    ``arrival(locked)`` selects (join, node, parent, outcome, at), unless a node arrived
    before. Returns (locked join rows, the nodes whose arrival row is new)."""
    from sqlalchemy.dialects.postgresql import insert

    locked = select(joins).where(join).with_for_update(skip_locked=True).cte("locked")
    new = (
        insert(join_arrivals)
        .from_select(
            ["join_id", "job_id", "parent_job_id", "parent_outcome", "at"], arrival(locked)
        )
        .on_conflict_do_nothing(index_elements=["join_id", "job_id"])
        .returning(join_arrivals.c.job_id)
        .cte("recorded")
    )
    return locked, new


@functools.cache
def _lock_and_insert() -> Any:
    locked, new = lock_and_insert(
        joins.c.id == bindparam("join", type_=BigInteger),
        lambda locked: select(
            locked.c.id,
            bindparam("node", type_=BigInteger),
            bindparam("parent", type_=BigInteger),
            bindparam("outcome", type_=String),
            bindparam("at", type_=Float),
        ),
    )
    arrival_of = select(new.c.job_id).scalar_subquery().label("arrival_of")
    return select(*locked.c, arrival_of, GENERIC_PLANS)


def skip_message(conn: Connection, join_id: int) -> str | None:
    """The skip reason the join's unsuccessful branches give (JOIN ``skipMessage``), if
    any: read only when a join fails, never on the hot path."""
    rows = conn.execute(
        select(jobs.c.parameters, join_arrivals.c.parent_outcome)
        .join(jobs, jobs.c.id == join_arrivals.c.job_id)
        .where(
            join_arrivals.c.join_id == join_id,
            join_arrivals.c.parent_outcome != Status.FINISHED.value,
        )
        .order_by(join_arrivals.c.id)
    ).all()
    found = [
        (row.parameters["skipMessage"], row.parent_outcome)
        for row in rows
        if isinstance(row.parameters, dict) and row.parameters.get("skipMessage")
    ]
    return skip_reason(found)
