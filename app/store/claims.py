"""Claiming jobs: a worker takes due jobs under a lease, renews it, checks before starting.

A claim is one guarded transition (WAITING_FOR_DISPATCH -> PROCESSING) on rows locked with
``FOR UPDATE SKIP LOCKED``, so two workers never take the same job. JOIN nodes among the
claimed rows run no user code: they arrive at their join in the claiming transaction if
its join row's lock is free (``SKIP LOCKED`` again: a claim never waits for another
transaction's join), else right after its commit (:func:`app.store.joins.arrive_held`).
Every later write for a claimed job is fenced by its lease token (:func:`held`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    select,
    update,
)

from app.domain.statuses import Status, Transition
from app.store import join_endings, joins
from app.store.database import Database, now
from app.store.guards import FoundBy, guard
from app.store.handoff import CLAIM_VALUES, CLAIMED_COLUMNS
from app.store.joblog import append_log
from app.store.join_claims import Taken
from app.store.join_endings import Decided
from app.store.tables import jobs
from app.store.transitions import LoggedUpdate, logged_update


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds; ``lease_token`` fences every later write for it."""

    id: int
    root_id: int
    target_object: str
    job_type: str
    target_id: str | None
    parameters: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    lease_token: str
    # A JOIN node waits below it: its end is recorded at once, not with the rest of a batch.
    joins_below: bool = False


@dataclass(frozen=True)
class Heartbeat:
    still_held: bool
    cancel_requested: bool


def claim(db: Database, owner: str, lease_seconds: float, limit: int = 1) -> list[Claim]:
    """Take up to ``limit`` claimable jobs, oldest due first (JOIN nodes arrive at once)."""
    token = str(uuid.uuid4())
    runs = 0

    def work(conn: Connection) -> tuple[Taken, int]:
        nonlocal runs
        runs += 1
        # A replay after a lost COMMIT answer: what the first run claimed is ours.
        if runs > 1:
            taken = claimed_with(conn, token)
            if taken.claims or taken.deferred:
                return taken, 0
        taken = claim_with_arrivals(conn, owner, limit, lease_seconds, now(), token)
        return taken, taken.released - taken.nodes

    taken, dispatchable = db.write(work, replay_safe=True)
    dispatchable += settle(db, taken, token, owner, limit, lease_seconds)
    end_decided(db, taken.decided)
    if dispatchable > 0:
        db.notify_dispatchable(dispatchable)
    return taken.claims


# The hot path's statements are built once: constructing SQLAlchemy statements per call
# cost more CPU than running them.
def _due(*only: ColumnElement[bool], found_by: FoundBy = FoundBy.STATUS) -> Select[Any]:
    return (
        select(jobs.c.id)
        .where(
            guard(Transition.CLAIM, found_by=found_by),  # claim_due's guard, with the lock
            jobs.c.run_after <= bindparam("now"),
            *only,
        )
        .order_by(jobs.c.run_after, jobs.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


DUE = _due()
# The JOIN nodes below jobs just recorded (a worker records such a job at once and makes
# its node arrive in the same commit, whatever else it claims).
_DUE_NODES = _due(
    jobs.c.parent_id.in_(bindparam("parents", expanding=True)),
    jobs.c.join_id.is_not(None),
    found_by=FoundBy.KEY,  # by their parents: never a scan of every due job
)
# SQLite: lock the ids (DUE), then claim them and log the claims.
_CLAIM = logged_update(
    Transition.CLAIM,
    jobs.c.id.in_(bindparam("ids", expanding=True)),
    CLAIM_VALUES,
    returning=CLAIMED_COLUMNS,
)


# PostgreSQL: all of it in one statement. The due rows are locked in a MATERIALIZED CTE,
# evaluated once: as an ``IN (subquery)`` PostgreSQL may rescan the skip-locked subquery
# per row and so claim every due job, not ``limit``. The lock is the guard: the rows it
# took are found by primary key, never by scanning every due job.
def claim_due(due: Select[Any], name: str = "moved") -> LoggedUpdate:
    once = due.cte("due").prefix_with("MATERIALIZED")
    return logged_update(
        Transition.CLAIM,
        jobs.c.id == once.c.id,
        CLAIM_VALUES,
        returning=CLAIMED_COLUMNS,
        found_by=FoundBy.LOCK,
        name=name,
    )


_CLAIM_DUE = claim_due(DUE)
_CLAIM_DUE_NODES = claim_due(_DUE_NODES)
_CLAIMED_BY = select(*CLAIMED_COLUMNS).where(
    jobs.c.lease_token == bindparam("token"), jobs.c.status == Status.PROCESSING.value
)


def _claim(
    conn: Connection,
    limit: int,
    params: dict[str, Any],
    t: float,
    parents: list[int] | None = None,
) -> list[Row[Any]]:
    due, claiming = (DUE, _CLAIM_DUE) if parents is None else (_DUE_NODES, _CLAIM_DUE_NODES)
    found: dict[str, Any] = {"now": t, "limit": limit}
    if parents is not None:
        found["parents"] = parents
    if conn.dialect.name == "postgresql":
        return claiming.run(conn, {**params, **found}, t)
    # Lock the ids first, in their own statement: as an IN (subquery) PostgreSQL may
    # rescan the skip-locked subquery per row and so claim every due job, not ``limit``.
    ids = list(conn.execute(due, found).scalars())
    if not ids:
        return []
    return _CLAIM.run(conn, {**params, "ids": ids}, t)


# Bounds the claim-arrive-claim loop of one transaction (a join of joins of joins ...).
_ARRIVAL_ROUNDS = 8


def claim_with_arrivals(
    conn: Connection,
    owner: str,
    limit: int,
    lease_seconds: float,
    t: float,
    token: str,
    below: list[int] | None = None,
    first: list[Row[Any]] | None = None,
    first_full: bool = False,
    first_joins: dict[int, Any] | None = None,
) -> Taken:
    """Claim up to ``limit`` jobs; JOIN nodes among them arrive at once, in this transaction.

    A JOIN node runs no user code, so handing it to a thread only delays its join: the
    last arrival decides the join (and the next round may claim what it started) in the
    commit that claimed it. With ``below`` (ids of jobs just recorded) the JOIN nodes
    under them are claimed first, whatever ``limit``. ``first``: rows this transaction
    claimed already under ``token`` (app/store/hop.py), the first round's; ``first_full``
    if it claimed ``limit`` due jobs (more may be due); ``first_joins`` the join rows it
    locked for its JOIN nodes, if it tried.
    """
    params = {"token": token, "owner": owner, "expires": t + lease_seconds, "now": t}
    taken = Taken(token=token, lease=params)
    if first is not None:
        if not _take(conn, taken, first, t, first_full, limit, first_joins):
            return taken
    elif below:
        taken.arrive(conn, _claim(conn, _NODES_BELOW, params, t, below), t)
    for _ in range(_ARRIVAL_ROUNDS):
        want = limit - len(taken.claims)
        if want <= 0:
            break
        rows = _claim(conn, want, params, t)
        if not _take(conn, taken, rows, t, len(rows) >= want, limit):
            break
    return taken


def _take(
    conn: Connection,
    taken: Taken,
    rows: list[Row[Any]],
    t: float,
    full: bool,
    limit: int,
    locked: dict[int, Any] | None = None,
) -> bool:
    """Add claimed rows to ``taken``: jobs to run, JOIN nodes that arrive now. True if
    another claim may find more: the claim was ``full`` (it took as many due jobs as it
    asked for: nodes among them took slots), or the arrivals made jobs claimable and did
    not hand them over (a claim that was not full took every job then due).

    Only a claim that was not full lets a firing hand the worker what it starts, into the
    room left of ``limit``: no job due before it is passed over (as in the hop)."""
    jobs_to_run = [r for r in rows if r.join_id is None]
    taken.claims.extend(claims_of(jobs_to_run, taken.token))
    # Released now, they would run after ``t``: the others were due before (not counted
    # among the jobs this transaction made claimable).
    taken.due_before += sum(1 for r in jobs_to_run if r.run_after < t)
    nodes = [r for r in rows if r.join_id is not None]
    released = taken.released
    room = 0 if full else limit - len(taken.claims)
    handed = taken.arrive(conn, nodes, t, room, locked)
    taken.claims.extend(claims_of(handed, taken.token))
    return bool(nodes) and (full or taken.released - len(handed) > released)


# The most JOIN nodes below the jobs of one record (MAX_BATCH jobs, a few nodes each).
_NODES_BELOW = 256


def settle(
    db: Database, taken: Taken, token: str, owner: str, limit: int, lease_seconds: float
) -> int:
    """After the commit that claimed them, the deferred JOIN nodes of ``taken`` arrive,
    and what their decisions released is claimed (``taken`` grows up to ``limit``
    claims), one transaction per round. Returns how many jobs became claimable and were
    not claimed."""
    dispatchable = 0
    while taken.deferred:
        want = max(0, limit - len(taken.claims))
        more = _settle_round(db, taken.deferred, token, owner, want, lease_seconds)
        taken.claims.extend(more.claims)
        taken.decided.extend(more.decided)
        taken.deferred, token = more.deferred, more.token
        dispatchable += max(0, more.released - more.nodes - len(more.claims) + more.due_before)
    return dispatchable


def _settle_round(
    db: Database, nodes: list[int], held_by: str, owner: str, want: int, lease_seconds: float
) -> Taken:
    token = str(uuid.uuid4())  # its own: a replay after a lost COMMIT answer finds its claims
    runs = 0

    def work(conn: Connection) -> Taken:
        nonlocal runs
        runs += 1
        if runs > 1 and ((got := claimed_with(conn, token)).claims or got.deferred):
            return got
        t = now()
        decided: list[Decided] = []  # held under ``held_by``, the first claim's token
        released = joins.arrive_held(conn, nodes, held_by, t, decided)
        more = Taken(token=token)
        if released and want:
            more = claim_with_arrivals(conn, owner, want, lease_seconds, t, token)
        more.released += released
        more.decided[:0] = decided
        return more

    taken = db.write(work, replay_safe=True, ping=False)
    if runs > 1:
        db.notify_dispatchable(None)  # an earlier run may have committed releases unannounced
    return taken


def end_decided(db: Database, decided: list[Decided]) -> None:
    """End the nodes these decisions left (a caller that does not carry them into its
    next transaction, as a worker does)."""
    if decided:
        db.write(lambda conn: join_endings.end_decided(conn, decided, now()))


def claimed_with(conn: Connection, token: str) -> Taken:
    """The jobs an earlier run of this very transaction claimed, if its commit went through
    although its answer was lost: a replay takes them over instead of orphaning them (its
    JOIN nodes still held arrive after the commit)."""
    rows = conn.execute(_CLAIMED_BY, {"token": token}).all()
    return Taken(
        claims=claims_of([r for r in rows if r.join_id is None], token),
        deferred=[r.id for r in rows if r.join_id is not None],
        token=token,
    )


def claims_of(rows: Sequence[Any], token: str) -> list[Claim]:
    return [
        Claim(
            id=r.id,
            root_id=r.root_id,
            target_object=r.target_object,
            job_type=r.job_type,
            target_id=r.target_id,
            parameters=r.parameters,
            attempt=r.attempt,
            max_attempts=r.attempt_floor + r.max_attempts,
            timeout_seconds=r.timeout_seconds,
            lease_token=token,
            joins_below=bool(r.joins_below),
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]


def heartbeat(
    db: Database,
    job_id: int,
    token: str,
    lease_seconds: float,
    progress: float | None = None,
    message: str | None = None,
    log: str = "",
    log_limit: int = 64 * 1024,
    started_at: float | None = None,
) -> Heartbeat:
    """Renew a lease, store progress, new log lines and when the function started, and
    report a pending cancel."""

    def work(conn: Connection) -> Heartbeat:
        t = now()
        values: dict[str, Any] = {"lease_expires_at": t + lease_seconds, "updated_at": t}
        if started_at is not None:
            values["started_at"] = started_at
        if progress is not None:
            values["progress"] = progress
        if message is not None:
            values["message"] = message
        row = conn.execute(
            update(jobs)
            .where(held(job_id, token))
            .values(**values)
            .returning(jobs.c.cancel_requested)
        ).first()
        if row is None:
            return Heartbeat(still_held=False, cancel_requested=False)
        if log:
            append_log(conn, job_id, log, log_limit)
        return Heartbeat(still_held=True, cancel_requested=bool(row.cancel_requested))

    return db.write(work)


def held(job_id: int, token: str) -> Any:
    """The rows a lease holder may still write: this job, running, under this token."""
    return and_(
        jobs.c.id == job_id,
        jobs.c.status == Status.PROCESSING.value,
        jobs.c.lease_token == token,
    )
