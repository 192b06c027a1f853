"""A job's success, the start of its next jobs and the worker's next claim: one statement.

The hot path of a chain on PostgreSQL. A worker that reports one job's success and wants
more work would otherwise pay a statement to finish it and start its next jobs, and one to
claim: two round trips and the Python between them, on every hop. Here one statement:

- finishes the job (guarded by its lease, by no cancel request, and by its status),
- claims due jobs oldest first, as an ordinary claim does (``FOR UPDATE SKIP LOCKED``),
- hands the worker the job's next jobs up to the claim's limit, and its JOIN nodes
  whatever the limit (they arrive in this transaction); each such job is logged twice, as
  started by its parent and as claimed, the two moves the state machine makes,
- starts the rest of the next jobs for any worker to claim.

Jobs due before the hop are claimed before the job's own next jobs, so a chain does not
jump the queue: what the worker gets is what the two statements would have given it.
A job that does not finish so (a lost lease, a cancel request) changes nothing, claims
nothing, and is recorded the long way by the caller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Row,
    and_,
    bindparam,
    exists,
    func,
    select,
    true,
    union_all,
)

from app.domain.statuses import Transition
from app.failpoints import failpoint
from app.store.arrivals import GENERIC_PLANS, lock_and_insert
from app.store.claims import DUE, claim_due, claims_of, settle
from app.store.database import Database
from app.store.dialect import prepared_at_once
from app.store.guards import FoundBy
from app.store.handoff import CLAIMED_COLUMNS, ONE_ROW, count, hand_children
from app.store.join_claims import Taken
from app.store.release import start_children
from app.store.tables import jobs, joins
from app.store.transitions import logged_together, logged_update

# Executed with many parameter sets by the batch path too (completion._FINISH_MANY).
FINISH_CONDITION = and_(jobs.c.id == bindparam("b_id"), jobs.c.lease_token == bindparam("b_token"))
FINISH_VALUES = {
    "message": bindparam("b_message"),
    "result": bindparam("b_result", type_=jobs.c.result.type),
    "progress": func.coalesce(bindparam("b_progress", type_=Float()), jobs.c.progress),
    "lease_token": None,
    "lease_owner": None,
    "lease_expires_at": None,
    "started_at": bindparam("b_started", type_=Float()),
    "finished_at": bindparam("b_ended", type_=Float()),
    "updated_at": bindparam("b_at"),
}
# The attempt's run, on its event rows too: the job's row holds only the latest attempt's.
RUN = ("b_started", "b_ended")

# One job that succeeded: guarded by the lease and by no cancel request, it needs no read
# before it. The next jobs are those of the row the finish moved (each row is updated once
# per statement, so they are other rows).
_FINISHED = logged_update(
    Transition.FINISH,
    FINISH_CONDITION & jobs.c.cancel_requested.is_(False),
    FINISH_VALUES,
    name="finished",
    ran=RUN,
    found_by=FoundBy.KEY,
)
_CHILDREN = jobs.c.parent_id.in_(select(_FINISHED.moved.c.id))


# The finish and the start of every next job, answering whether it finished and how many
# started (a worker that claims nothing: a slow job's flush).
_STARTED_AFTER = start_children(_CHILDREN, name="started")
FINISH_AND_RELEASE = logged_together(
    select(
        count(_FINISHED.moved).label("ended"),
        count(_STARTED_AFTER.moved).label("started"),
    ),
    _FINISHED,
    _STARTED_AFTER,
)

# -- the hand-off ------------------------------------------------------------------------

# Due jobs, only if the job finished: a hop that did not happen claims nothing.
_CLAIMED = claim_due(DUE.where(exists(select(_FINISHED.moved.c.id))), name="claimed")
# The worker takes the job's next jobs up to what the claim left of the limit, and its
# JOIN nodes (they arrive in the hop's transaction); the rest start for anyone.
_HAND = hand_children(
    _CHILDREN,
    func.greatest(0, bindparam("limit", type_=Integer()) - count(_CLAIMED.moved)),
    nodes=True,
)
_HANDED = _HAND.handed
_TAKEN = union_all(
    select(*(_CLAIMED.moved.c[c.name] for c in CLAIMED_COLUMNS)),
    select(*(_HANDED.c[c.name] for c in CLAIMED_COLUMNS)),
).subquery("taken")
_ANSWER = (
    count(_FINISHED.moved).label("ended"),
    count(_HAND.started.moved).label("started"),
    count(_HANDED).label("handed"),
    count(_CLAIMED.moved).label("due"),
    *_TAKEN.c,
)
FINISH_AND_HAND_OFF = logged_together(
    select(*_ANSWER).select_from(ONE_ROW.outerjoin(_TAKEN, true())),
    _FINISHED,
    _CLAIMED,
    _HAND.started,
).add_cte(_HAND.logged)


@functools.cache
def finish_hand_off_and_arrive() -> Any:
    """The hop of a job with a JOIN node below: when it hands over exactly one node, the
    same statement locks the node's join row (unless another transaction holds it) and
    writes the node's arrival row, as arrivals.lock_and_record would in a statement of
    its own. Built on first use: it needs PostgreSQL's INSERT, which a process on SQLite
    never imports."""
    one_node = select(func.count()).select_from(_HANDED).where(_HANDED.c.join_id.is_not(None))
    locked, recorded = lock_and_insert(
        joins.c.id.in_(select(_HANDED.c.join_id)) & (one_node.scalar_subquery() == 1),
        lambda locked: select(
            locked.c.id,
            _HANDED.c.id,
            _HANDED.c.parent_id,
            _HANDED.c.arrival_outcome,
            bindparam("at", type_=Float()),
        ).where(_HANDED.c.join_id == locked.c.id),
    )
    return logged_together(
        select(
            *_ANSWER,
            *(c.label(f"j_{c.name}") for c in locked.c),
            select(recorded.c.job_id).scalar_subquery().label("arrival_of"),
            GENERIC_PLANS,
        ).select_from(
            ONE_ROW.outerjoin(_TAKEN, true()).outerjoin(locked, locked.c.id == _TAKEN.c.join_id)
        ),
        _FINISHED,
        _CLAIMED,
        _HAND.started,
    ).add_cte(_HAND.logged)


@dataclass(frozen=True)
class HandOff:
    """What a hop did: how many next jobs it started (for anyone, or handed to the
    worker), and the rows the worker took: due jobs and its handed next jobs."""

    released: int
    taken: list[Row[Any]]  # as a claim returns them (JOIN nodes among them arrive next)
    left: int = 0  # of ``released``, not handed to the worker
    due: int = 0  # of ``taken``, jobs that were due before the hop
    # With ``arrive``: the join row of the one JOIN node handed over, locked (its
    # ``arrival_of``: the node, if its arrival row is new), or None if another
    # transaction held it. None: the hop did not try (no node handed over, or several).
    joins: dict[int, Any] | None = None


def finish_and_hand_off(
    conn: Connection, params: dict[str, Any], arrive: bool = False
) -> HandOff | None:
    """Run the hop (``params``: the finish's, plus the claim's token, owner, expires,
    now and limit, and ``at``); None when the job did not finish so (nothing changed).
    With ``arrive`` (a JOIN node below the job), a single node handed over has its join
    row locked and its arrival row written by the same statement."""
    if arrive:  # prepared at once: it runs once per parent of a join, not per hop
        with prepared_at_once(conn):
            rows = conn.execute(finish_hand_off_and_arrive(), params).all()
    else:
        rows = conn.execute(FINISH_AND_HAND_OFF, params).all()
    if not rows[0].ended:
        return None
    first = rows[0]
    started, handed = int(first.started), int(first.handed)
    taken = [r for r in rows if r.id is not None]
    hand = HandOff(started + handed, taken, left=started, due=int(first.due))
    # Handed over: the job's own next jobs (a due job claimed with them is no child of it).
    nodes = [r for r in taken if r.join_id is not None and r.parent_id == params["b_id"]]
    if not arrive or len(nodes) != 1:
        return hand
    [node] = nodes
    if node.j_id is None:  # held by another transaction: the node is deferred
        return replace(hand, joins={node.join_id: None})
    join = SimpleNamespace(
        **{c.name: getattr(node, f"j_{c.name}") for c in joins.c},
        arrival_of=node.arrival_of,
    )
    return replace(hand, joins={join.id: join})


def hop_alone(
    db: Database, params: dict[str, Any], lease_seconds: float
) -> tuple[Taken, int] | None:
    """The hop as its own transaction: the statement commits as it ends, so a chain's hop
    costs one round trip. Returns what the worker took (JOIN nodes among the due jobs it
    claimed arrive right after, as a busy join's do: claims.settle) and how many jobs it
    left claimable; None when the job did not finish so (nothing changed).

    A crash before the statement loses nothing the worker reported that it cannot report
    again; after it, the job and the claims are committed (the failpoints say so).
    """
    failpoint("before_finish_commit")
    hand = db.alone(lambda conn: finish_and_hand_off(conn, params))
    if hand is None:
        return None
    failpoint("after_finish_commit")
    token, owner, limit = params["token"], params["owner"], params["limit"]
    taken = Taken(token=token)
    taken.claims.extend(claims_of([r for r in hand.taken if r.join_id is None], token))
    taken.deferred = [r.id for r in hand.taken if r.join_id is not None]
    # Exact: what it started and did not hand over, and what the deferred nodes release.
    dispatchable = hand.left + settle(db, taken, token, owner, limit, lease_seconds)
    if dispatchable:
        db.notify_dispatchable(dispatchable)
    return taken, dispatchable
