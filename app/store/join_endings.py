"""Ending the JOIN nodes that wait for a join's decision.

A decision ends every node that arrived and waits (WAITING_FOR_PARENT) with the join's
outcome. On a wide fan-in that is one row per branch, the most expensive part of the
deciding transaction (on PostgreSQL ~5 ms for 100 nodes, each an update and an event).
So when a worker's claim decides a join, it commits the decision, the release of the
join's next jobs and their claim first, and ends the waiting nodes in its next
transaction (usually the one recording the job the join started): the next job starts
without waiting for them. Until then the deciding node stays PROCESSING under the
worker's lease and the others read WAITING_FOR_PARENT under a decided join. If that worker
vanishes first, the deciding node's lease expires, the reaper hands it back, and its
arrival again at the decided join ends them all (:func:`app.store.joins.arrive_claimed`).

Every other decision (a timeout, a cancel, a claim outside a worker pool) ends its
nodes in its own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, select

from app.domain.join_rules import DECISION_STATUS, WAITING
from app.domain.statuses import JOIN_ENDINGS, Status, Transition
from app.store.guards import FoundBy
from app.store.tables import jobs, join_arrivals, joins
from app.store.transitions import AT, LoggedUpdate, logged_update


@dataclass(frozen=True)
class Decided:
    """A JOIN node whose arrival decided its join, still held by the worker's claim
    (``token``): it ends, with the nodes that waited, in the worker's next transaction."""

    node_id: int
    join_id: int
    token: str
    message: str


def arrived_nodes(join_id: Any) -> Any:
    """The JOIN nodes of ``join_id`` whose arrival is recorded."""
    return jobs.c.id.in_(select(join_arrivals.c.job_id).where(join_arrivals.c.join_id == join_id))


LEASE_CLEARED: dict[str, Any] = {"lease_token": None, "lease_owner": None, "lease_expires_at": None}
_NODE = jobs.c.id == bindparam("b_node")
_HELD_NODE = _NODE & (jobs.c.lease_token == bindparam("b_token"))


def _awaiting(node: ColumnElement[bool]) -> LoggedUpdate:
    """An arrived node waits for the others."""
    values = {**LEASE_CLEARED, "message": bindparam("b_message"), "updated_at": AT}
    return logged_update(Transition.AWAIT_JOIN, node, values, found_by=FoundBy.KEY)


def _ending(node: ColumnElement[bool], held: bool) -> dict[Status, LoggedUpdate]:
    """Nodes end with their join's decision: ``held``, an arriving one (PROCESSING),
    else those that arrived and wait. Prebuilt per ending: built per call, they cost more
    CPU than running them."""
    values: dict[str, Any] = {
        "message": bindparam("b_message"),
        "finished_at": AT,
        "updated_at": AT,
    }
    source = Status.PROCESSING if held else Status.WAITING_FOR_PARENT
    if held:
        values = {**LEASE_CLEARED, **values}
    return {
        outcome: logged_update(ending, node, values, only_from=source, found_by=FoundBy.KEY)
        for outcome, ending in JOIN_ENDINGS.items()
    }


AWAIT = _awaiting(_NODE)
END_ARRIVING = _ending(_NODE, held=True)
_END_WAITING = _ending(
    (jobs.c.join_id == bindparam("b_join")) & arrived_nodes(bindparam("b_join")), held=False
)
_AWAIT_HELD = _awaiting(_HELD_NODE)
_END_HELD = _ending(_HELD_NODE, held=True)
_DECIDED = (
    select(joins.c.id, joins.c.key, joins.c.state)
    .where(joins.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(joins.c.id)
    .with_for_update()
)


def end_nodes(conn: Connection, join_id: int, key: str, state: str, at: float) -> None:
    """End the nodes of a join decided ``state`` (locked by the caller) that wait."""
    params = {"b_join": join_id, "b_message": f"join {key!r} {state}", "at": at}
    _END_WAITING[DECISION_STATUS[state]].run(conn, params, at)


def end_decided(conn: Connection, decided: Sequence[Decided], at: float) -> None:
    """End what these held deciding nodes left: each node, and the nodes that waited.

    Each join is locked (id order, as every arrival locks joins) and read again. One that
    reopened since (a retried branch) waits again: its node waits with it. A node no
    longer held under its token (the reaper or a retry took it back) is left alone.
    """
    if not decided:
        return
    states = {
        row.id: row for row in conn.execute(_DECIDED, {"ids": sorted({d.join_id for d in decided})})
    }
    for item in sorted(decided, key=lambda d: (d.join_id, d.node_id)):
        join = states[item.join_id]
        params = {"b_node": item.node_id, "b_token": item.token, "at": at}
        if join.state == WAITING:
            _AWAIT_HELD.run(conn, {**params, "b_message": item.message}, at)
            continue
        end_nodes(conn, join.id, join.key, join.state, at)
        ending = _END_HELD[DECISION_STATUS[join.state]]
        ending.run(conn, {**params, "b_message": item.message}, at)
