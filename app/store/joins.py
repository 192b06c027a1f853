"""Exact fan-in: arrivals at a join, its single decision, and what the decision ends.

A JOIN node is released when its parent ends, carrying the outcome it stands for (the
parent's end, or the upstream join's decision: ``jobs.arrival_outcome``, written at
release and never re-read from a row that moves on). It arrives in the transaction that
claims it: the arrival, the recount and the decision happen with the join row locked, and
the decision is applied by ``UPDATE joins SET state = ... WHERE state = 'WAITING'``, so
two arrivals can never both be the last and a decided join never decides again.

Every JOIN node ends with its join's decision (FINISHED, FAILED or CANCELLED): at its
arrival when the join has decided, else it waits (WAITING_FOR_PARENT) until the decision
ends it (a worker's decision ends them in its next commit: app/store/join_endings.py). The
decision also releases the join's next jobs, which hang below one of its nodes (the
owner), by the ordinary rules of a parent's end.

Lock order: a claim locks the node, then the join; so do cancel and retry. A claim never
waits for a join row: it takes the lock with SKIP LOCKED (:func:`lock_free`), and a node
whose join another transaction holds arrives after the claim's commit, in a transaction
of its own that holds nothing else while it waits (:func:`arrive_held`). A decision holds
the join and then ends only nodes that have arrived and wait, which no claim holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    select,
    update,
)

from app.domain.join_rules import CANCELLED, DECISION_STATUS, FAILED, WAITING, decide
from app.domain.statuses import Status
from app.failpoints import failpoint
from app.store import arrivals
from app.store.database import Database, now
from app.store.firing import COUNT_AND_DECIDE, SET_COUNTS, Hand, fire
from app.store.join_endings import (
    AWAIT,
    END_ARRIVING,
    Decided,
    end_nodes,
)
from app.store.release import release_finished, release_next_jobs
from app.store.tables import jobs, joins

# Arrivals are on the hot path of a wide fan-in: their statements are built once.
LOCK_JOIN = select(joins).where(joins.c.id == bindparam("join_id")).with_for_update()
_IDS: Any = bindparam("ids", expanding=True)
_LOCK_JOINS = select(joins).where(joins.c.id.in_(_IDS)).order_by(joins.c.id).with_for_update()
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


# -- arrivals --------------------------------------------------------------------------


def arrive_claimed(
    conn: Connection,
    nodes: Sequence[Row[Any]],
    at: float,
    decided: list[Decided] | None = None,
    token: str = "",
    locked: dict[int, Any] | None = None,
    hand: Hand | None = None,
    recorded: set[int] | None = None,
) -> int:
    """JOIN nodes this transaction just claimed arrive, each with the outcome it carries.

    Join rows are locked in id order, so two transactions never wait on each other in a
    cycle (``locked``: join rows the caller locked and read, each good for the first of
    its nodes; the next ones read it again). With ``decided`` (a worker's claim under
    ``token``), a node that decides its join stays held and is listed there: it and the
    nodes that waited end in the worker's next transaction (app/store/join_endings.py),
    so what the join starts is claimed without waiting for them; with ``hand`` (PostgreSQL)
    the worker's claim takes what a firing starts, as far as it has room (firing.fire).
    ``recorded``: nodes whose arrival row the statement that locked the join wrote.
    Returns how many jobs became claimable, the handed ones among them.
    """
    started = 0
    for node in sorted(nodes, key=lambda n: (n.join_id, n.id)):
        join = (locked or {}).pop(node.join_id, None)
        if join is None:
            join = conn.execute(LOCK_JOIN, {"join_id": node.join_id}).one()
        outcome = arrivals.carried_outcome(node)
        new = node.id in (recorded or ())
        counted = _count_arrival(conn, join, node, outcome, at, hand, new, defer_counts=True)
        state, arrived = counted.state, counted.arrived
        message = f"arrival {arrived} of {join.expected} at join {join.key!r} (parent {outcome})"
        if counted.decided:
            end_waiting = decided is None
            started += _apply_decision(conn, join, state, at, end_waiting, counted.started)
            if decided is not None:
                decided.append(Decided(node.id, join.id, token, f"{message}; join {state}"))
                continue
        elif join.decided_by_job_id == node.id:
            # The node that decided arrives again: the worker that held it vanished (or
            # lost its commit's answer) before it ended the nodes that waited.
            end_nodes(conn, join.id, join.key, state, at)
        if state == WAITING:
            params = {"b_node": node.id, "b_message": f"{message}; waiting for the others"}
            _await(conn, {**params, "at": at}, counted.unwritten)
            continue
        if counted.unwritten is not None:
            conn.execute(SET_COUNTS, counted.unwritten)
        params = {"b_node": node.id, "b_message": f"{message}; join {state}", "at": at}
        END_ARRIVING[DECISION_STATUS[state]].run(conn, params, at)
    return started


def lock_free(conn: Connection, join_ids: set[int]) -> dict[int, Row[Any]]:
    """Lock and read those of these join rows no other transaction holds. (SQLite has one
    writer at a time: every row is this transaction's.)"""
    rows = conn.execute(_LOCK_FREE, {"ids": sorted(join_ids)})
    return {row.id: row for row in rows}


def arrive_held(
    conn: Connection,
    node_ids: list[int],
    token: str,
    at: float,
    decided: list[Decided] | None = None,
) -> int:
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
    ids = sorted({n.join_id for n in nodes})
    locked = {row.id: row for row in conn.execute(_LOCK_JOINS, {"ids": ids})}
    return arrive_claimed(conn, nodes, at, decided, token, locked)


def arrive_cancelled(conn: Connection, node: Row[Any], at: float) -> int:
    """A JOIN node cancelled by a user arrives as a cancelled branch, unless it had
    arrived already. Returns how many jobs became claimable."""
    join = conn.execute(LOCK_JOIN, {"join_id": node.join_id}).one()
    if arrivals.previous_outcome(conn, join.id, node.id) is not None:
        return 0
    counted = _count_arrival(conn, join, node, Status.CANCELLED.value, at)
    return _apply_decision(conn, join, counted.state, at) if counted.decided else 0


class Counted(NamedTuple):
    """An arrival counted: the join's state, how many arrived, whether this arrival
    decided it, how many next jobs the firing's statement started (None: not started by
    it), and the counts still to write (an arrival that decided nothing, deferred)."""

    state: str
    arrived: int
    decided: bool
    started: int | None = None
    unwritten: dict[str, Any] | None = None


def _count_arrival(
    conn: Connection,
    join: Row[Any],
    node: Row[Any],
    outcome: str,
    at: float,
    hand: Hand | None = None,
    recorded: bool = False,
    defer_counts: bool = False,
) -> Counted:
    """Record the arrival (``recorded``: written already), recount, decide. A node
    arriving again (its parent was retried) replaces its recorded outcome instead of
    counting twice. With
    ``defer_counts``, an arrival that decides nothing leaves its counts to the caller,
    which writes them with the node's own change (:func:`_await`)."""
    previous = None if recorded else arrivals.record(conn, join.id, node, outcome, at)
    # Counted on the locked join row, so an arrival costs the same whatever the width.
    outcomes: Counter[str] = Counter(join.outcome_counts or {})
    if previous is not None:
        outcomes[previous] -= 1
    outcomes[outcome] += 1
    outcomes = +outcomes  # drop zero counts
    failpoint("mid_join")  # the arrival is written, the decision not yet taken
    arrived = sum(outcomes.values())
    counts = {"b_join": join.id, "counts": dict(outcomes)}
    decision = decide(join.trigger, join.expected, outcomes) if join.state == WAITING else None
    if decision is not None:
        params = {**counts, "b_state": decision, "b_at": at, "b_by": node.id}
        fires = DECISION_STATUS[decision] == Status.FINISHED and join.owner_job_id is not None
        if fires and conn.dialect.name == "postgresql":  # the hot path of a fan-in
            started = fire(conn, {**params, "at": at}, hand)
            if started is not None:
                return Counted(decision, arrived, True, started)
        elif conn.execute(COUNT_AND_DECIDE, params).rowcount == 1:
            return Counted(decision, arrived, True)
    if defer_counts:
        return Counted(join.state, arrived, False, unwritten=counts)
    conn.execute(SET_COUNTS, counts)
    return Counted(join.state, arrived, False)


# PostgreSQL: an arrival that decided nothing writes its counts with the node's wait.
_COUNT_AND_AWAIT = AWAIT.combined.add_cte(SET_COUNTS.cte("counted"))


def _await(conn: Connection, params: dict[str, Any], counts: dict[str, Any] | None) -> None:
    """The arrived node waits for the others; ``counts``: the join's, still to write."""
    if counts is not None and conn.dialect.name == "postgresql":
        conn.execute(_COUNT_AND_AWAIT, {**params, **counts})
        return
    if counts is not None:
        conn.execute(SET_COUNTS, counts)
    AWAIT.run(conn, params, params["at"])


# -- the decision ----------------------------------------------------------------------

# What releasing the join's next jobs reads of the node they hang below.
_OWNER: Select[Any] = select(jobs.c.id, jobs.c.target_object).where(jobs.c.id == bindparam("owner"))
_DECIDE = (
    update(joins)
    .where(joins.c.id == bindparam("b_join"), joins.c.state == WAITING)
    .values(
        state=bindparam("b_state"),
        decided_at=bindparam("b_at"),
        decided_by_job_id=bindparam("b_by"),
    )
)


def _decide(conn: Connection, join_id: int, state: str, by_job: int | None, at: float) -> bool:
    """The guarded decision: true for exactly one caller per join."""
    params = {"b_join": join_id, "b_state": state, "b_at": at, "b_by": by_job}
    return conn.execute(_DECIDE, params).rowcount == 1


def _apply_decision(
    conn: Connection,
    join: Row[Any],
    decision: str,
    at: float,
    end_waiting: bool = True,
    started: int | None = None,
) -> int:
    """End the nodes that arrived and wait (unless the caller ends them later), and
    release the join's next jobs with the decision's outcome (a JOIN node among them
    carries it to the next join), unless the decision's statement ``started`` them."""
    outcome = DECISION_STATUS[decision]
    if end_waiting:
        end_nodes(conn, join.id, join.key, decision, at)
    if started is not None:
        return started
    if join.owner_job_id is None:
        return 0
    if outcome == Status.FINISHED:  # the hot path: nothing to read of the owner
        return release_finished(conn, [join.owner_job_id], at)
    owner = conn.execute(_OWNER, {"owner": join.owner_job_id}).one()
    reason = None
    if decision == FAILED:  # read only then: never on the hot path of a firing join
        reason = arrivals.skip_message(conn, join.id) or (
            f"skipped: join {join.key!r} did not succeed ({join.trigger})"
        )
    elif decision == CANCELLED:
        reason = f"cancelled: every branch of join {join.key!r} was cancelled"
    return release_next_jobs(conn, owner, outcome, at, reason=reason)


# -- timeouts (retries: app/store/join_rearm.py) ---------------------------------------


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
