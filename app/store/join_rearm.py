"""Retried parents take their JOIN nodes' arrivals back, and reopen what those decided.

A parent retried (or revived) will end again: its nodes' old arrivals must not count.
They are withdrawn with the join row locked, the counts recomputed from the arrival rows,
and a join that failed or was cancelled because of them reopens (app/store/joins.py
decides it again when the nodes arrive anew).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, func, or_, select, update

from app.domain.join_rules import CANCELLED, DECISION_STATUS, FAILED, WAITING
from app.domain.statuses import Status, Transition
from app.store.firing import SET_COUNTS
from app.store.join_endings import LEASE_CLEARED, arrived_nodes
from app.store.joins import LOCK_JOIN
from app.store.release import revive_blocked
from app.store.tables import jobs, join_arrivals, joins
from app.store.transitions import apply

_JOINS_OF = select(jobs.c.join_id).distinct()
_LOCK_JOINS_OF = (
    select(joins.c.id)
    .where(joins.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(joins.c.id)
    .with_for_update()
)


def rearm(conn: Connection, parent_ids: list[int], at: float) -> None:
    """JOIN nodes under retried (or revived) parents wait to arrive again.

    Their old arrival is withdrawn, so no decision counts an outcome that is being redone.
    A join that failed or was cancelled because of the old outcome reopens: its nodes wait
    again, and what its decision skipped, cancelled or carried to further joins comes back
    (recursively, down any number of joins). A FIRED or timed-out join never decides again.
    """
    if not parent_ids:
        return
    nodes = jobs.c.parent_id.in_(parent_ids) & jobs.c.join_id.is_not(None)
    # Joins before nodes, as a decision's endings lock them (end_decided): the other order
    # deadlocks with a worker ending the node this retry takes back.
    join_ids = list(conn.execute(_JOINS_OF.where(nodes)).scalars())
    if not join_ids:
        return  # no JOIN node below
    conn.execute(_LOCK_JOINS_OF, {"ids": join_ids})
    rearmed = apply(
        conn,
        Transition.REARM,
        and_(
            nodes,
            # A node still waiting for its parent has nothing to withdraw.
            or_(
                jobs.c.status != Status.WAITING_FOR_PARENT.value,
                jobs.c.id.in_(select(join_arrivals.c.job_id)),
            ),
        ),
        at=at,
        # A node held by a worker (arriving, or the decider whose waiting siblings it ends
        # next) is taken back from it: its lease token no longer matches.
        values={**LEASE_CLEARED, "finished_at": None, "arrival_outcome": None, "message": None},
        returning=(jobs.c.join_id,),
    )
    for row in sorted(rearmed, key=lambda r: (r.join_id, r.id)):
        join = conn.execute(LOCK_JOIN, {"join_id": row.join_id}).one()
        conn.execute(
            delete(join_arrivals).where(
                join_arrivals.c.join_id == join.id, join_arrivals.c.job_id == row.id
            )
        )
        counts: dict[str, int] = dict(
            conn.execute(
                select(join_arrivals.c.parent_outcome, func.count())
                .where(join_arrivals.c.join_id == join.id)
                .group_by(join_arrivals.c.parent_outcome)
            ).all()
        )
        conn.execute(SET_COUNTS, {"b_join": join.id, "counts": counts})
        if join.state in (FAILED, CANCELLED) and join.decided_by_job_id is not None:
            _reopen(conn, join, at)


def _reopen(conn: Connection, join: Row[Any], at: float) -> None:
    reopened = conn.execute(
        update(joins)
        .where(joins.c.id == join.id, joins.c.state == join.state)
        .values(state=WAITING, decided_at=None, decided_by_job_id=None)
    ).rowcount
    if not reopened:
        return
    apply(
        conn,
        Transition.REOPEN,
        and_(jobs.c.join_id == join.id, arrived_nodes(join.id)),
        at=at,
        only_from=DECISION_STATUS[join.state],
        values={"finished_at": None, "message": f"join {join.key!r} reopened"},
    )
    if join.owner_job_id is not None:
        revived = revive_blocked(conn, [join.owner_job_id], at)
        rearm(conn, [join.owner_job_id, *revived], at)
