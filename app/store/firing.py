"""A join's decision as one guarded update, and on PostgreSQL the start of what it fires.

The arrival that decides a join writes the counts and the decision in one update guarded
by ``state = 'WAITING'`` (true for exactly one arrival). On PostgreSQL a firing join's
statement also starts the join's next jobs (they hang below its owner node), and when the
deciding transaction is a worker's claim with room left, hands them to that worker
(app/store/handoff.py): the job a join fires is claimed in the statement that fires it,
not by another claim after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Integer, Row, bindparam, select, true, update

from app.domain.join_rules import WAITING
from app.store.dialect import prepared_at_once
from app.store.handoff import CLAIMED_COLUMNS, ONE_ROW, count, hand_children
from app.store.release import start_children
from app.store.tables import jobs, joins
from app.store.transitions import logged_together

COUNTS = bindparam("counts", type_=joins.c.outcome_counts.type)
SET_COUNTS = update(joins).where(joins.c.id == bindparam("b_join")).values(outcome_counts=COUNTS)
# The arrival that decides writes the counts and the decision in one guarded update.
COUNT_AND_DECIDE = (
    update(joins)
    .where(joins.c.id == bindparam("b_join"), joins.c.state == WAITING)
    .values(
        outcome_counts=COUNTS,
        state=bindparam("b_state"),
        decided_at=bindparam("b_at"),
        decided_by_job_id=bindparam("b_by"),
    )
)
# (The parameter names of these statements differ from the columns of jobs: they update
# it too.)
_DECIDED = COUNT_AND_DECIDE.returning(joins.c.owner_job_id).cte("decided")
_NEXT_JOBS = jobs.c.parent_id.in_(select(_DECIDED.c.owner_job_id))

# The counts, the decision and the start of the join's next jobs, answering both.
_STARTED = start_children(_NEXT_JOBS, name="started")
_FIRE_AND_START = logged_together(
    select(count(_DECIDED).label("decided"), count(_STARTED.moved).label("started")),
    _STARTED,
)
# The same, handing the worker the first next jobs by id up to ``limit`` (a JOIN node
# among them is started, not handed: it arrives when claimed, as after any release).
_HAND = hand_children(_NEXT_JOBS, bindparam("limit", type_=Integer()), nodes=False)
_FIRE_AND_HAND_OFF = logged_together(
    select(
        count(_DECIDED).label("decided"),
        count(_HAND.started.moved).label("started"),
        *(_HAND.handed.c[c.name] for c in CLAIMED_COLUMNS),
    ).select_from(ONE_ROW.outerjoin(_HAND.handed, true())),
    _HAND.started,
).add_cte(_HAND.logged)


@dataclass
class Hand:
    """A worker's claim that takes what a firing starts: its lease's parameters (token,
    owner, expires, now), the room left in it, and the rows handed so far."""

    lease: dict[str, Any]
    limit: int
    rows: list[Row[Any]] = field(default_factory=list)


def fire(conn: Connection, params: dict[str, Any], hand: Hand | None = None) -> int | None:
    """PostgreSQL: decide a join that fires and start its next jobs, handing ``hand``'s
    worker what fits in its claim. ``params``: the decision's (``b_join``, ``counts``,
    ``b_state``, ``b_at``, ``b_by``) and ``at``. Returns how many next jobs it made
    claimable, the handed ones among them, or None when the join had decided already."""
    if hand is None or hand.limit <= 0:
        with prepared_at_once(conn):
            row = conn.execute(_FIRE_AND_START, params).one()
        return int(row.started) if row.decided else None
    with prepared_at_once(conn):
        rows = conn.execute(_FIRE_AND_HAND_OFF, {**params, **hand.lease, "limit": hand.limit}).all()
    if not rows[0].decided:
        return None
    handed = [r for r in rows if r.id is not None]
    hand.rows.extend(handed)
    hand.limit -= len(handed)
    return int(rows[0].started) + len(handed)
