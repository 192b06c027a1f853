"""Exact fan-in: arrivals at a join, its single decision, and what the decision ends.

A JOIN node is released when its parent ends, carrying the outcome it stands for (the
parent's end, or the upstream join's decision: ``jobs.arrival_outcome``, written at
release and never re-read from a row that moves on). It arrives in the transaction that
claims it: the arrival, the recount and the decision happen with the join row locked, and
the decision is applied by ``UPDATE joins SET state = ... WHERE state = 'WAITING'``, so
two arrivals can never both be the last and a decided join never decides again.

Every JOIN node ends with its join's decision (FINISHED, FAILED or CANCELLED): at its
arrival when the join has decided, else it waits (WAITING_FOR_PARENT) until the decision
ends it. The decision also releases the join's next jobs, which hang below one of its
nodes (the owner), by the ordinary rules of a parent's end.

Lock order: a claim locks the node, then the join; so do cancel and retry. A claim never
waits for a join row: it takes the lock with SKIP LOCKED (:func:`lock_free`), and a node
whose join another transaction holds arrives after the claim's commit, in a transaction
of its own that holds nothing else while it waits (:func:`arrive_held`). A decision holds
the join and then ends only nodes that have arrived and wait, which no claim holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from app.domain.join_plan import skip_reason
from app.domain.join_rules import CANCELLED, DECISION_STATUS, FAILED, WAITING, decide
from app.domain.statuses import JOIN_ENDINGS, Status, Transition
from app.failpoints import failpoint
from app.store.database import Database, now
from app.store.release import release_next_jobs, revive_blocked
from app.store.tables import jobs, join_arrivals, joins
from app.store.transitions import AT, apply, logged_update

# Arrivals are on the hot path of a wide fan-in: their statements are built once.
_LOCK_JOIN = select(joins).where(joins.c.id == bindparam("join_id")).with_for_update()
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
_INSERT_ARRIVAL = insert(join_arrivals)
_SET_COUNTS = (
    update(joins)
    .where(joins.c.id == bindparam("join_id"))
    .values(outcome_counts=bindparam("counts", type_=joins.c.outcome_counts.type))
)
_IDS: Any = bindparam("ids", expanding=True)
_LOCK_JOINS = select(joins.c.id).where(joins.c.id.in_(_IDS)).order_by(joins.c.id).with_for_update()
_LOCK_FREE = _LOCK_JOINS.with_for_update(skip_locked=True)
_HELD_NODES: Select[Any] = (
    select(jobs.c.id, jobs.c.join_id, jobs.c.parent_id, jobs.c.arrival_outcome)
    .where(
        jobs.c.id.in_(_IDS),
        jobs.c.status == Status.PROCESSING.value,
        jobs.c.lease_token == bindparam("token"),
    )
    .order_by(jobs.c.id)
    .with_for_update()
)
_LEASE_CLEARED = {"lease_token": None, "lease_owner": None, "lease_expires_at": None}


def _arrived_nodes(join_id: Any) -> Any:
    """The JOIN nodes of ``join_id`` whose arrival is recorded."""
    return jobs.c.id.in_(select(join_arrivals.c.job_id).where(join_arrivals.c.join_id == join_id))


# An arriving node waits for the others, or ends with the join's decision; a decision ends
# the nodes that arrived and wait. Prebuilt per ending: built per call, they cost more CPU
# than running them.
_NODE = jobs.c.id == bindparam("b_node")
_AWAIT = logged_update(
    Transition.AWAIT_JOIN,
    _NODE,
    {**_LEASE_CLEARED, "message": bindparam("b_message"), "updated_at": AT},
)
_END_ARRIVING = {
    outcome: logged_update(
        ending,
        _NODE,
        {**_LEASE_CLEARED, "message": bindparam("b_message"), "finished_at": AT, "updated_at": AT},
        only_from=Status.PROCESSING,
    )
    for outcome, ending in JOIN_ENDINGS.items()
}
_END_WAITING = {
    outcome: logged_update(
        ending,
        (jobs.c.join_id == bindparam("b_join")) & _arrived_nodes(bindparam("b_join")),
        {"message": bindparam("b_message"), "finished_at": AT, "updated_at": AT},
        only_from=Status.WAITING_FOR_PARENT,
    )
    for outcome, ending in JOIN_ENDINGS.items()
}


# -- arrivals --------------------------------------------------------------------------


def arrive_claimed(conn: Connection, nodes: Sequence[Row[Any]], at: float) -> int:
    """JOIN nodes this transaction just claimed arrive, each with the outcome it carries.

    Join rows are locked in id order, so two transactions never wait on each other in a
    cycle. Returns how many jobs became claimable.
    """
    started = 0
    for node in sorted(nodes, key=lambda n: (n.join_id, n.id)):
        join = conn.execute(_LOCK_JOIN, {"join_id": node.join_id}).one()
        outcome = node.arrival_outcome or Status.FINISHED.value
        state, arrived, decided_now = _count_arrival(conn, join, node, outcome, at)
        if decided_now:
            started += _apply_decision(conn, join, state, at)
        message = f"arrival {arrived} of {join.expected} at join {join.key!r} (parent {outcome})"
        if state == WAITING:
            params = {"b_node": node.id, "b_message": f"{message}; waiting for the others"}
            _AWAIT.run(conn, {**params, "at": at}, at)
            continue
        params = {"b_node": node.id, "b_message": f"{message}; join {state}", "at": at}
        _END_ARRIVING[DECISION_STATUS[state]].run(conn, params, at)
    return started


def lock_free(conn: Connection, join_ids: set[int]) -> set[int]:
    """Lock those of these join rows no other transaction holds; returns their ids.
    (SQLite has one writer at a time: every row is this transaction's.)"""
    if conn.dialect.name != "postgresql":
        return join_ids
    return set(conn.execute(_LOCK_FREE, {"ids": sorted(join_ids)}).scalars())


def arrive_held(conn: Connection, node_ids: list[int], token: str, at: float) -> int:
    """JOIN nodes claimed under ``token`` whose join was busy at the claim arrive now.

    Run in a transaction of its own, after the claim's commit (claims.settle): it locks
    the nodes still held under ``token``, then waits for their joins' locks in id order,
    holding nothing another waiter could need. Returns how many jobs became claimable. A
    node whose worker vanished before this ran is handed back by the reaper and arrives
    when claimed again.
    """
    nodes = conn.execute(_HELD_NODES, {"ids": sorted(node_ids), "token": token}).all()
    if not nodes:
        return 0
    conn.execute(_LOCK_JOINS, {"ids": sorted({n.join_id for n in nodes})}).all()
    return arrive_claimed(conn, nodes, at)


def arrive_cancelled(conn: Connection, node: Row[Any], at: float) -> int:
    """A JOIN node cancelled by a user arrives as a cancelled branch, unless it had
    arrived already. Returns how many jobs became claimable."""
    join = conn.execute(_LOCK_JOIN, {"join_id": node.join_id}).one()
    key = {"b_join": join.id, "b_job": node.id}
    if conn.execute(_PREVIOUS_OUTCOME, key).scalar() is not None:
        return 0
    state, _, decided_now = _count_arrival(conn, join, node, Status.CANCELLED.value, at)
    return _apply_decision(conn, join, state, at) if decided_now else 0


def _count_arrival(
    conn: Connection, join: Row[Any], node: Row[Any], outcome: str, at: float
) -> tuple[str, int, bool]:
    """Record the arrival, recount, decide. Returns (the join's state, arrivals, whether
    this arrival decided it). A node arriving again (its parent was retried) replaces its
    recorded outcome instead of counting twice."""
    previous = _record_arrival(conn, join.id, node, outcome, at)
    # Counted on the locked join row, so an arrival costs the same whatever the width.
    outcomes: Counter[str] = Counter(join.outcome_counts or {})
    if previous is not None:
        outcomes[previous] -= 1
    outcomes[outcome] += 1
    outcomes = +outcomes  # drop zero counts
    conn.execute(_SET_COUNTS, {"join_id": join.id, "counts": dict(outcomes)})
    failpoint("mid_join")  # the arrival is written, the decision not yet taken
    arrived = sum(outcomes.values())
    if join.state != WAITING:
        return join.state, arrived, False
    decision = decide(join.trigger, join.expected, outcomes)
    if decision is None or not _decide(conn, join.id, decision, node.id, at):
        return WAITING, arrived, False
    return decision, arrived, True


def _record_arrival(
    conn: Connection, join_id: int, node: Row[Any], outcome: str, at: float
) -> str | None:
    """Insert or update the node's arrival; returns the outcome it replaced, if any."""
    key = {"b_join": join_id, "b_job": node.id}
    previous: str | None = conn.execute(_PREVIOUS_OUTCOME, key).scalar()
    if previous is not None:
        conn.execute(_UPDATE_ARRIVAL, {**key, "outcome": outcome, "at": at})
    else:
        conn.execute(
            _INSERT_ARRIVAL,
            {
                "join_id": join_id,
                "job_id": node.id,
                "parent_job_id": node.parent_id,
                "parent_outcome": outcome,
                "at": at,
            },
        )
    return previous


# -- the decision ----------------------------------------------------------------------


def _decide(conn: Connection, join_id: int, state: str, by_job: int | None, at: float) -> bool:
    """The guarded decision: true for exactly one caller per join."""
    return (
        conn.execute(
            update(joins)
            .where(joins.c.id == join_id, joins.c.state == WAITING)
            .values(state=state, decided_at=at, decided_by_job_id=by_job)
        ).rowcount
        == 1
    )


def _apply_decision(conn: Connection, join: Row[Any], decision: str, at: float) -> int:
    """End the nodes that arrived and wait, and release the join's next jobs with the
    decision's outcome (a JOIN node among them carries it to the next join)."""
    outcome = DECISION_STATUS[decision]
    params = {"b_join": join.id, "b_message": f"join {join.key!r} {decision}", "at": at}
    _END_WAITING[outcome].run(conn, params, at)
    if join.owner_job_id is None:
        return 0
    owner = conn.execute(select(jobs).where(jobs.c.id == join.owner_job_id)).one()
    reason = {
        FAILED: _skip_message(conn, join.id)
        or f"skipped: join {join.key!r} did not succeed ({join.trigger})",
        CANCELLED: f"cancelled: every branch of join {join.key!r} was cancelled",
    }.get(decision)
    return release_next_jobs(conn, owner, outcome, at, reason=reason)


def _skip_message(conn: Connection, join_id: int) -> str | None:
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


# -- retries and timeouts --------------------------------------------------------------


def rearm(conn: Connection, parent_ids: list[int], at: float) -> None:
    """JOIN nodes under retried (or revived) parents wait to arrive again.

    Their old arrival is withdrawn, so no decision counts an outcome that is being redone.
    A join that failed or was cancelled because of the old outcome reopens: its nodes wait
    again, and what its decision skipped, cancelled or carried to further joins comes back
    (recursively, down any number of joins). A FIRED or timed-out join never decides again.
    """
    if not parent_ids:
        return
    rearmed = apply(
        conn,
        Transition.REARM,
        and_(
            jobs.c.parent_id.in_(parent_ids),
            jobs.c.join_id.is_not(None),
            # A node still waiting for its parent has nothing to withdraw.
            or_(
                jobs.c.status != Status.WAITING_FOR_PARENT.value,
                jobs.c.id.in_(select(join_arrivals.c.job_id)),
            ),
        ),
        at=at,
        values={"finished_at": None, "arrival_outcome": None, "message": None},
        returning=(jobs.c.join_id,),
    )
    for row in sorted(rearmed, key=lambda r: (r.join_id, r.id)):
        join = conn.execute(_LOCK_JOIN, {"join_id": row.join_id}).one()
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
        conn.execute(_SET_COUNTS, {"join_id": join.id, "counts": counts})
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
        and_(jobs.c.join_id == join.id, _arrived_nodes(join.id)),
        at=at,
        only_from=DECISION_STATUS[join.state],
        values={"finished_at": None, "message": f"join {join.key!r} reopened"},
    )
    if join.owner_job_id is not None:
        revived = revive_blocked(conn, [join.owner_job_id], at)
        rearm(conn, [join.owner_job_id, *revived], at)


def expire(db: Database, limit: int = 100) -> int:
    """Fail joins past their deadline; their nodes and next jobs follow the decision."""

    def work(conn: Connection) -> tuple[int, int]:
        t = now()
        due = conn.execute(
            select(joins)
            .where(joins.c.state == WAITING, joins.c.deadline < t)
            .order_by(joins.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        started = 0
        for join in due:
            seconds = join.deadline - join.created_at
            if not _decide(conn, join.id, FAILED, None, t):
                continue
            conn.execute(
                update(joins)
                .where(joins.c.id == join.id)
                .values(message=f"timed out after {seconds:g} s")
            )
            started += _apply_decision(conn, join, FAILED, t)
        return len(due), started

    count, started = db.write(work)
    if started:
        db.notify_dispatchable()
    return count
