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

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Row,
    Text,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)

from app.domain.statuses import Status, Transition, sources, target
from app.failpoints import failpoint
from app.store.claims import CLAIM_VALUES, CLAIMED_COLUMNS, DUE, claim_due, claims_of, settle
from app.store.database import Database
from app.store.guards import FoundBy, froms, guard, status_literal
from app.store.join_claims import Taken
from app.store.release import JOIN_DUE, start_children
from app.store.tables import job_events, jobs
from app.store.transitions import AT, logged_together, logged_update

# A job handed over moves as PARENT_FINISHED (ARRIVE for a JOIN node) and then CLAIM.
for _first in (Transition.PARENT_FINISHED, Transition.ARRIVE):
    if target(_first) not in sources(Transition.CLAIM) or len(sources(_first)) != 1:
        raise RuntimeError(f"{_first} must move one status to a status CLAIM takes")

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


def _count(cte: Any) -> Any:
    return select(func.count()).select_from(cte).scalar_subquery()


# The finish and the start of every next job, answering whether it finished and how many
# started (a worker that claims nothing: a slow job's flush).
_STARTED_AFTER = start_children(_CHILDREN, name="started")
FINISH_AND_RELEASE = logged_together(
    select(
        _count(_FINISHED.moved).label("ended"),
        _count(_STARTED_AFTER.moved).label("started"),
    ),
    _FINISHED,
    _STARTED_AFTER,
)

# -- the hand-off ------------------------------------------------------------------------

# Due jobs, only if the job finished: a hop that did not happen claims nothing.
_CLAIMED = claim_due(DUE.where(exists(select(_FINISHED.moved.c.id))), name="claimed")
# The next jobs the worker takes: the first by id up to what the claim left of the limit.
_OWN = (
    select(jobs.c.id)
    .where(
        _CHILDREN,
        # Found by parent: written, like the guard, as a filter no index matches (guards.py)
        jobs.c.join_id.is_(None).is_(True),
        guard(Transition.PARENT_FINISHED, found_by=FoundBy.KEY),
    )
    .order_by(jobs.c.id)
    .limit(func.greatest(0, bindparam("limit", type_=Integer()) - _count(_CLAIMED.moved)))
)
_NODE = jobs.c.join_id.is_not(None)
_HANDED = (
    update(jobs)
    .where(
        _CHILDREN,
        guard(Transition.PARENT_FINISHED, found_by=FoundBy.KEY),
        or_(_NODE, jobs.c.id.in_(_OWN)),
    )
    .values(
        {
            **CLAIM_VALUES,
            "status": target(Transition.CLAIM).value,
            "run_after": case((_NODE, JOIN_DUE["run_after"]), else_=AT),
            "arrival_outcome": case((_NODE, Status.FINISHED.value)),
        }
    )
    .returning(*CLAIMED_COLUMNS, jobs.c.updated_at)
    .cte("handed")
)
# Each handed job's two event rows, in order (ids are drawn as the rows are inserted).
_RELEASED_EVENT = select(
    _HANDED.c.id.label("job_id"),
    status_literal(froms(Transition.PARENT_FINISHED, None)[0]).label("from_status"),
    status_literal(target(Transition.PARENT_FINISHED)).label("to_status"),
    (_HANDED.c.attempt - 1).label("attempt"),  # before the claim's increment
    _HANDED.c.updated_at,
    case(
        (_HANDED.c.join_id.is_not(None), literal(str(Transition.ARRIVE), Text)),
        else_=literal(str(Transition.PARENT_FINISHED), Text),
    ).label("reason"),
    literal(0).label("step"),
)
_CLAIM_EVENT = select(
    _HANDED.c.id,
    status_literal(target(Transition.PARENT_FINISHED)),
    status_literal(target(Transition.CLAIM)),
    _HANDED.c.attempt,
    _HANDED.c.updated_at,
    literal(str(Transition.CLAIM), Text),
    literal(1),
)
_EVENTS = union_all(_RELEASED_EVENT, _CLAIM_EVENT).subquery("handed_events")
_HANDED_LOGGED = insert(job_events).from_select(
    ["job_id", "from_status", "to_status", "attempt", "at", "reason"],
    select(*list(_EVENTS.c)[:6]).order_by(_EVENTS.c.job_id, _EVENTS.c.step),
)
# The next jobs the worker did not take start for any worker.
_STARTED_REST = start_children(_CHILDREN & jobs.c.id.not_in(select(_HANDED.c.id)), name="started")
_TAKEN = union_all(
    select(*(_CLAIMED.moved.c[c.name] for c in CLAIMED_COLUMNS)),
    select(*(_HANDED.c[c.name] for c in CLAIMED_COLUMNS)),
).subquery("taken")
_ONE = select(literal(1, Integer).label("one")).subquery("one")
FINISH_AND_HAND_OFF = logged_together(
    select(
        _count(_FINISHED.moved).label("ended"),
        _count(_STARTED_REST.moved).label("started"),
        _count(_HANDED).label("handed"),
        *_TAKEN.c,
    ).select_from(_ONE.outerjoin(_TAKEN, true())),
    _FINISHED,
    _CLAIMED,
    _STARTED_REST,
).add_cte(_HANDED_LOGGED.cte("handed_logged"))


@dataclass(frozen=True)
class HandOff:
    """What a hop did: how many next jobs it started (for anyone, or handed to the
    worker), and the rows the worker took: due jobs and its handed next jobs."""

    released: int
    taken: list[Row[Any]]  # as a claim returns them (JOIN nodes among them arrive next)
    left: int = 0  # of ``released``, not handed to the worker


def finish_and_hand_off(conn: Connection, params: dict[str, Any]) -> HandOff | None:
    """Run the hop (``params``: the finish's, plus the claim's token, owner, expires,
    now and limit, and ``at``); None when the job did not finish so (nothing changed)."""
    rows = conn.execute(FINISH_AND_HAND_OFF, params).all()
    if not rows[0].ended:
        return None
    first = rows[0]
    started, handed = int(first.started), int(first.handed)
    return HandOff(started + handed, [r for r in rows if r.id is not None], left=started)


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
