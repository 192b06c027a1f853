"""Exact fan-in: arrivals at a join and the single decision that starts its next jobs.

A JOIN node starts when its parent ends, whatever the outcome, and records its arrival
when it ends. The arrival, the recount and the decision happen in the transaction that
ends the node, with the join row locked and the decision applied by
``UPDATE joins SET state = ... WHERE state = 'WAITING'``: two arrivals can never both be
the last, and a decided join never decides again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.failpoints import failpoint
from app.join_plan import JoinPlan
from app.statuses import TERMINAL, Status, Transition
from app.store.database import Database, now
from app.store.release import release_next_jobs
from app.store.tables import jobs, join_arrivals, joins
from app.store.transitions import apply

WAITING, FIRED, FAILED, CANCELLED = "WAITING", "FIRED", "FAILED", "CANCELLED"
TERMINAL_VALUES = frozenset(status.value for status in TERMINAL)


class JoinConflict(Exception):
    """A submission disagrees with a cross-submission join already stored (HTTP 409)."""


# -- submission ----------------------------------------------------------------------------


def prepare(conn: Connection, plans: list[JoinPlan], root_id: int, at: float) -> dict[int, int]:
    """Create (or, for batches, find) each planned join; returns ``id(spec) -> join id``.

    For a batch join whose next jobs an earlier submission already declared, identical
    next jobs here are dropped (they run once); different ones are a JoinConflict.
    """
    join_of: dict[int, int] = {}
    for plan in plans:
        row = _get_or_create(conn, plan, root_id, at)
        if plan.batch is not None:
            _check_batch(row, plan)
            if plan.owner is not None and row.owner_job_id is not None:
                plan.owner.next_jobs = []
                plan.owner = None
        plan.join_id = row.id
        for node in plan.nodes:
            join_of[id(node)] = row.id
    return join_of


def set_owners(conn: Connection, plans: list[JoinPlan], job_ids: dict[int, int]) -> None:
    """Record which stored JOIN node carries each join's next jobs (``id(spec) -> job id``)."""
    for plan in plans:
        if plan.owner is None:
            continue
        conn.execute(
            update(joins)
            .where(joins.c.id == plan.join_id, joins.c.owner_job_id.is_(None))
            .values(owner_job_id=job_ids[id(plan.owner)], next_jobs_digest=plan.next_jobs_digest)
        )


def _scope(plan: JoinPlan, root_id: int) -> str:
    if plan.batch is not None:
        return f"batch:{plan.key}:{plan.batch}"
    return f"tree:{root_id}:{plan.key}"


def _get_or_create(conn: Connection, plan: JoinPlan, root_id: int, at: float) -> Row[Any]:
    scope = _scope(plan, root_id)
    existing = conn.execute(select(joins).where(joins.c.scope == scope)).first()
    if existing is not None:
        return existing
    values: dict[str, Any] = {
        "scope": scope,
        "key": plan.key,
        "batch": plan.batch,
        "root_id": None if plan.batch else root_id,
        "trigger": plan.trigger,
        "expected": plan.expected,
        "state": WAITING,
        "outcome_counts": {},
        "deadline": at + plan.timeout_seconds if plan.timeout_seconds else None,
        "created_at": at,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(joins).values(values))
    except IntegrityError:
        pass  # another submission created the same batch join a moment ago
    return conn.execute(select(joins).where(joins.c.scope == scope)).one()


def _check_batch(row: Row[Any], plan: JoinPlan) -> None:
    for name, stored, given in (
        ("trigger", row.trigger, plan.trigger),
        ("expect", row.expected, plan.expected),
    ):
        if stored != given:
            raise JoinConflict(
                f"join {plan.key!r} batch {plan.batch!r} has {name} {stored!r}; "
                f"this submission says {given!r}"
            )
    if (
        plan.owner is not None
        and row.next_jobs_digest is not None
        and row.next_jobs_digest != plan.next_jobs_digest
    ):
        raise JoinConflict(
            f"join {plan.key!r} batch {plan.batch!r} already has different next jobs "
            f"(declared with job {row.owner_job_id})"
        )


# -- arrivals and the decision ---------------------------------------------------------


# Arrivals are on the hot path of a wide fan-in: their statements are built once.
_LOCK_JOIN = select(joins).where(joins.c.id == bindparam("join_id")).with_for_update()
_PARENT_STATUS = select(jobs.c.status).where(jobs.c.id == bindparam("parent_id"))
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
_SET_MESSAGE = (
    update(jobs).where(jobs.c.id == bindparam("job_id")).values(message=bindparam("message"))
)


def arrive(conn: Connection, node: Row[Any], at: float, outcome: Status | None = None) -> int:
    """Record that JOIN node ``node`` arrived; decide the join if this completes it.

    The arrival carries the parent's outcome (or ``outcome``, e.g. CANCELLED when the node
    itself was cancelled). Returns how many jobs became claimable. Re-arrival of the same
    node (its parent was retried) updates the recorded outcome instead of counting twice.
    """
    join = conn.execute(_LOCK_JOIN, {"join_id": node.join_id}).one()
    parent_outcome = (
        outcome.value
        if outcome is not None
        else conn.execute(_PARENT_STATUS, {"parent_id": node.parent_id}).scalar_one()
    )
    if parent_outcome not in TERMINAL_VALUES:
        # The parent was retried while this node was on its way: arrive with its final
        # outcome instead, when it ends.
        apply(conn, Transition.REARM, jobs.c.id == node.id, at=at, values={"finished_at": None})
        return 0
    previous = _record_arrival(conn, join.id, node, parent_outcome, at)
    # Counted on the locked join row, so an arrival costs the same whatever the width.
    outcomes: Counter[str] = Counter(join.outcome_counts or {})
    if previous is not None:
        outcomes[previous] -= 1
    outcomes[parent_outcome] += 1
    outcomes = +outcomes  # drop zero counts
    conn.execute(_SET_COUNTS, {"join_id": join.id, "counts": dict(outcomes)})
    failpoint("mid_join")  # the arrival is written, the decision not yet taken
    arrived = sum(outcomes.values())
    message = f"arrival {arrived} of {join.expected} at join {join.key!r} (parent {parent_outcome})"
    started = 0
    decision = decide(join.trigger, join.expected, outcomes) if join.state == WAITING else None
    if decision is not None and _decide(conn, join.id, decision, node.id, at):
        message += f"; join {decision}"
        started = _release_continuation(conn, join, decision, at)
    elif join.state != WAITING:
        message += f"; join already {join.state}"
    conn.execute(_SET_MESSAGE, {"job_id": node.id, "message": message})
    return started


def decide(trigger: str, expected: int, outcomes: Counter[str]) -> str | None:
    """The join's state once these parent outcomes have arrived, or None to keep waiting."""
    arrived = sum(outcomes.values())
    finished = outcomes[Status.FINISHED.value]
    failed = outcomes[Status.FAILED.value]
    complete = arrived >= expected
    if trigger == "one_success" and finished:
        return FIRED
    if trigger == "one_failed" and failed:
        return FIRED
    if not complete:
        return None
    if outcomes[Status.CANCELLED.value] == arrived:
        return CANCELLED  # every branch was cancelled: so is what follows them
    if trigger == "all_done":
        return FIRED
    if trigger == "all_success" and finished == arrived:
        return FIRED
    return FAILED


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


def _release_continuation(conn: Connection, join: Row[Any], decision: str, at: float) -> int:
    if join.owner_job_id is None:
        return 0
    owner = conn.execute(select(jobs).where(jobs.c.id == join.owner_job_id)).one()
    outcome = {FIRED: Status.FINISHED, FAILED: Status.FAILED, CANCELLED: Status.CANCELLED}[decision]
    reason = {
        FAILED: f"skipped: join {join.key!r} did not succeed ({join.trigger})",
        CANCELLED: f"cancelled: every branch of join {join.key!r} was cancelled",
    }.get(decision)
    return release_next_jobs(conn, owner, outcome, at, reason=reason)


# -- retries and timeouts --------------------------------------------------------------


def rearm(conn: Connection, parent_ids: list[int], at: float) -> None:
    """JOIN nodes under retried (or revived) parents wait to arrive again.

    Their old arrival is withdrawn, so no decision counts an outcome that is being redone.
    A join that failed or was cancelled because of the old outcome reopens; a FIRED or
    timed-out join never decides again.
    """
    if not parent_ids:
        return
    rearmed = apply(
        conn,
        Transition.REARM,
        jobs.c.parent_id.in_(parent_ids) & jobs.c.join_id.is_not(None),
        at=at,
        values={"finished_at": None},
        returning=(jobs.c.join_id,),
    )
    for row in sorted(rearmed, key=lambda r: r.join_id):
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
        if join.state not in (FAILED, CANCELLED) or join.decided_by_job_id is None:
            continue
        conn.execute(
            update(joins)
            .where(joins.c.id == join.id, joins.c.state == join.state)
            .values(state=WAITING, decided_at=None, decided_by_job_id=None)
        )
        if join.owner_job_id is not None:
            apply(
                conn,
                Transition.UNBLOCK,
                jobs.c.blocked_by == join.owner_job_id,
                at=at,
                values={"blocked_by": None, "message": None, "finished_at": None},
            )


def expire(db: Database, limit: int = 100) -> int:
    """Fail joins past their deadline; their next jobs follow the failure rules."""

    def work(conn: Connection) -> tuple[int, int]:
        t = now()
        due = conn.execute(
            select(joins)
            .where(joins.c.state == WAITING, joins.c.deadline < t)
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
            started += _release_continuation(conn, join, FAILED, t)
        return len(due), started

    count, started = db.write(work)
    if started:
        db.notify_dispatchable()
    return count


# -- reading ---------------------------------------------------------------------------


def get_join(db: Database, join_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(joins).where(joins.c.id == join_id)).mappings().first()
        if row is None:
            return None
        return _describe(conn, dict(row))


def list_joins(
    db: Database, key: str | None, batch: str | None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(joins).order_by(joins.c.id.desc()).limit(limit)
    if key is not None:
        query = query.where(joins.c.key == key)
    if batch is not None:
        query = query.where(joins.c.batch == batch)
    with db.read() as conn:
        return [_describe(conn, dict(row)) for row in conn.execute(query).mappings()]


def _describe(conn: Connection, join: dict[str, Any]) -> dict[str, Any]:
    join["arrivals"] = [
        dict(r)
        for r in conn.execute(
            select(join_arrivals)
            .where(join_arrivals.c.join_id == join["id"])
            .order_by(join_arrivals.c.at, join_arrivals.c.id)
        ).mappings()
    ]
    join["node_job_ids"] = list(
        conn.execute(
            select(jobs.c.id).where(jobs.c.join_id == join["id"]).order_by(jobs.c.id)
        ).scalars()
    )
    join["next_job_ids"] = []
    join["started_job_ids"] = []
    if join["owner_job_id"] is not None:
        children = conn.execute(
            select(jobs.c.id, jobs.c.status)
            .where(jobs.c.parent_id == join["owner_job_id"])
            .order_by(jobs.c.position)
        ).all()
        join["next_job_ids"] = [c.id for c in children]
        if join["state"] != WAITING:
            not_started = {
                Status.WAITING_FOR_PARENT.value,
                Status.SKIPPED.value,
                Status.CANCELLED.value,
            }
            join["started_job_ids"] = [c.id for c in children if c.status not in not_started]
    return join
