"""Handing a worker the next jobs a change started, inside that change's statement.

A claim takes due jobs; a hand-off gives the claiming worker, in the very statement that
starts them, next jobs nobody else has seen yet: a chain's next link (app/store/hop.py)
or what a join's firing starts (app/store/firing.py). A handed job moves as the state
machine moves it: started (PARENT_FINISHED, or ARRIVE for a JOIN node), then claimed
(CLAIM), each move logged in its own event row, in that order. What is not handed is
started for any worker.

This module also holds what every claim writes and reads of a claimed job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)

from app.domain.statuses import Status, Transition, sources, target
from app.store.guards import FoundBy, froms, guard, status_literal
from app.store.release import JOIN_DUE, start_children
from app.store.tables import job_events, jobs
from app.store.transitions import AT, LoggedUpdate

# A job handed over moves as PARENT_FINISHED (ARRIVE for a JOIN node) and then CLAIM.
for _first in (Transition.PARENT_FINISHED, Transition.ARRIVE):
    if target(_first) not in sources(Transition.CLAIM) or len(sources(_first)) != 1:
        raise RuntimeError(f"{_first} must move one status to a status CLAIM takes")

_BELOW = jobs.alias("below")
# What a claim reads of each job it takes.
CLAIMED_COLUMNS = (
    jobs.c.id,
    jobs.c.attempt,
    jobs.c.root_id,
    jobs.c.target_object,
    jobs.c.job_type,
    jobs.c.target_id,
    jobs.c.parameters,
    jobs.c.attempt_floor,
    jobs.c.max_attempts,
    jobs.c.timeout_seconds,
    jobs.c.join_id,
    jobs.c.parent_id,
    jobs.c.arrival_outcome,
    jobs.c.run_after,  # before the claiming transaction's time: due before it
    # Spelled out: SQLite's RETURNING names the updated table's columns unqualified, and
    # inside this subquery an unqualified ``id`` would be the child's.
    exists()
    .where(_BELOW.c.parent_id == literal_column("jobs.id"), _BELOW.c.join_id.is_not(None))
    .label("joins_below"),
)
# What a claim writes: the worker's lease (``token``, ``owner``, ``expires``) at ``now``.
CLAIM_VALUES = {
    "attempt": jobs.c.attempt + 1,
    "lease_token": bindparam("token"),
    "lease_owner": bindparam("owner"),
    "lease_expires_at": bindparam("expires"),
    # The worker stamps the function's real start (it may wait in the worker's batch); a
    # JOIN node runs nothing: it arrives in the claiming transaction.
    "claimed_at": bindparam("now"),
    "started_at": case((jobs.c.join_id.is_not(None), bindparam("now", type_=Float())), else_=None),
    "updated_at": bindparam("now"),
    "finished_at": None,
    "progress": None,
}


def count(cte: Any) -> Any:
    """How many rows a CTE of the statement moved."""
    return select(func.count()).select_from(cte).scalar_subquery()


@dataclass(frozen=True)
class HandOffParts:
    """The CTEs of a hand-off, to add to the statement that starts the jobs."""

    handed: Any  # the handed rows, as a claim returns them (CLAIMED_COLUMNS)
    logged: Any  # their event rows
    started: LoggedUpdate  # the next jobs not handed, started for any worker


def hand_children(
    children: ColumnElement[bool], limit: ColumnElement[Any], nodes: bool
) -> HandOffParts:
    """Hand the worker the waiting next jobs ``children`` selects (a condition on
    ``jobs.parent_id`` over the statement's earlier CTEs): the first by id up to ``limit``
    (an SQL expression), and with ``nodes`` every JOIN node among them whatever the limit
    (the caller makes them arrive in the same transaction); start the rest for anyone.
    The statement binds the claim's ``token``, ``owner``, ``expires``, ``now``, and ``at``."""
    waiting = guard(Transition.PARENT_FINISHED, found_by=FoundBy.KEY)
    own = (
        select(jobs.c.id)
        # Found by parent: written, like the guard, as a filter no index matches (guards.py)
        .where(children, jobs.c.join_id.is_(None).is_(True), waiting)
        .order_by(jobs.c.id)
        .limit(limit)
    )
    node = jobs.c.join_id.is_not(None)
    handed = (
        update(jobs)
        .where(children, waiting, or_(node, jobs.c.id.in_(own)) if nodes else jobs.c.id.in_(own))
        .values(
            {
                **CLAIM_VALUES,
                "status": target(Transition.CLAIM).value,
                "run_after": case((node, JOIN_DUE["run_after"]), else_=AT),
                "arrival_outcome": case((node, Status.FINISHED.value)),
            }
        )
        .returning(*CLAIMED_COLUMNS, jobs.c.updated_at)
        .cte("handed")
    )
    return HandOffParts(
        handed,
        _logged(handed).cte("handed_logged"),
        start_children(children & jobs.c.id.not_in(select(handed.c.id)), name="started"),
    )


def _logged(handed: Any) -> Any:
    """Each handed job's two event rows, in order (ids are drawn as the rows are
    inserted)."""
    released = select(
        handed.c.id.label("job_id"),
        status_literal(froms(Transition.PARENT_FINISHED, None)[0]).label("from_status"),
        status_literal(target(Transition.PARENT_FINISHED)).label("to_status"),
        (handed.c.attempt - 1).label("attempt"),  # before the claim's increment
        handed.c.updated_at,
        case(
            (handed.c.join_id.is_not(None), literal(str(Transition.ARRIVE), Text)),
            else_=literal(str(Transition.PARENT_FINISHED), Text),
        ).label("reason"),
        literal(0).label("step"),
    )
    claimed = select(
        handed.c.id,
        status_literal(target(Transition.PARENT_FINISHED)),
        status_literal(target(Transition.CLAIM)),
        handed.c.attempt,
        handed.c.updated_at,
        literal(str(Transition.CLAIM), Text),
        literal(1),
    )
    events = union_all(released, claimed).subquery("handed_events")
    return insert(job_events).from_select(
        ["job_id", "from_status", "to_status", "attempt", "at", "reason"],
        select(*list(events.c)[:6]).order_by(events.c.job_id, events.c.step),
    )


ONE_ROW = select(literal(1, Integer).label("one")).subquery("one")
