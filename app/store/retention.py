"""Retention: finished chains older than the retention period are deleted, in batches (and
automation's ticks, evaluations and asset events, ``purge_automation``).

A chain (every job of one root) goes as a whole, with its events, logs, join arrivals,
Idempotency-Keys and schedule fire records, once every job in it is terminal and the last
one ended before the cutoff. Chains that share a join (a cross-submission batch) go
together, and only once the join has decided and every one of them may go: a waiting join,
or one with a node in a live chain, keeps all of them. Deleting keeps the jobs table and
its indexes small under a steady load; each batch is one short transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, delete, exists, func, or_, select

from app.domain.statuses import TERMINAL
from app.store.automation_tables import (
    asset_evaluations,
    asset_events,
    automation_requests,
    automation_ticks,
)
from app.store.database import Database, now
from app.store.tables import (
    idempotency_keys,
    job_events,
    job_logs,
    jobs,
    join_arrivals,
    joins,
    schedule_fires,
)

# Chains per transaction, and a bound on their jobs (one huge chain still goes alone).
BATCH_CHAINS = 500
BATCH_JOBS = 20_000
TERMINAL_VALUES = sorted(status.value for status in TERMINAL)
_WAITING_JOIN = "WAITING"
# Rounds of pulling in chains that share a join before a batch settles for less.
_MAX_ROUNDS = 10


@dataclass(frozen=True)
class Batch:
    chains: int  # chains deleted
    jobs: int  # their jobs
    last_root: int | None  # where the next batch's scan goes on; None: nothing left


def purge_finished(
    db: Database,
    older_than_seconds: float,
    batch_chains: int = BATCH_CHAINS,
    at: float | None = None,
) -> tuple[int, int]:
    """Delete finished chains that ended more than ``older_than_seconds`` ago.

    Returns (chains, jobs) deleted. One transaction per batch of at most ``batch_chains``
    chains; the scan moves on by root id, so chains that must stay are passed only once.
    """
    cutoff = (now() if at is None else at) - older_than_seconds
    after, chains, deleted_jobs = 0, 0, 0
    while True:
        batch = db.write(partial(_purge_batch, cutoff=cutoff, after=after, limit=batch_chains))
        chains += batch.chains
        deleted_jobs += batch.jobs
        if batch.last_root is None:
            return chains, deleted_jobs
        after = batch.last_root


def _unfinished(cutoff: float) -> Any:
    """A job of the outer ``jobs`` row's chain that is live or ended after ``cutoff``."""
    member = jobs.alias("member")
    return exists().where(
        member.c.root_id == jobs.c.id,
        or_(
            member.c.status.not_in(TERMINAL_VALUES),
            func.coalesce(member.c.finished_at, member.c.updated_at) >= cutoff,
        ),
    )


def _deletable(conn: Connection, roots: Iterable[int], cutoff: float) -> set[int]:
    """Those of ``roots`` whose whole chain is terminal and ended before ``cutoff``."""
    ids = sorted(set(roots))
    if not ids:
        return set()
    query = select(jobs.c.id).where(
        jobs.c.id.in_(ids), jobs.c.id == jobs.c.root_id, ~_unfinished(cutoff)
    )
    return set(conn.execute(query).scalars())


def _purge_batch(conn: Connection, cutoff: float, after: int, limit: int) -> Batch:
    # Roots are scanned in id order, which is submission order: the scan ends at the first
    # job submitted after the cutoff, so an idle run reads only the chains it must keep.
    horizon = conn.execute(
        select(jobs.c.id).where(jobs.c.created_at >= cutoff).order_by(jobs.c.id).limit(1)
    ).scalar()
    candidates = select(jobs.c.id).where(
        jobs.c.id > after,
        jobs.c.id == jobs.c.root_id,
        jobs.c.status.in_(TERMINAL_VALUES),
        ~_unfinished(cutoff),
    )
    if horizon is not None:
        candidates = candidates.where(jobs.c.id < horizon)
    found = list(
        conn.execute(
            candidates.order_by(jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=jobs)  # another process purges those
        ).scalars()
    )
    if not found:
        return Batch(0, 0, None)
    last_root = found[-1] if len(found) == limit else None
    roots = _bounded(conn, found)
    if len(roots) < len(found):
        last_root = roots[-1]  # the rest waits for the next batch
    chosen, join_ids = _with_join_partners(conn, set(roots), cutoff)
    if not chosen:
        return Batch(0, 0, last_root)
    ids = sorted(chosen)
    # Lock every job of the chosen chains, then check again under the locks: a user retry
    # that committed meanwhile keeps its chain (the whole batch waits for the next run).
    conn.execute(
        select(jobs.c.id).where(jobs.c.root_id.in_(ids)).order_by(jobs.c.id).with_for_update()
    )
    if _deletable(conn, ids, cutoff) != chosen:
        return Batch(0, 0, last_root)
    job_ids = select(jobs.c.id).where(jobs.c.root_id.in_(ids)).scalar_subquery()
    conn.execute(delete(job_events).where(job_events.c.job_id.in_(job_ids)))
    conn.execute(delete(job_logs).where(job_logs.c.job_id.in_(job_ids)))
    if join_ids:
        conn.execute(delete(join_arrivals).where(join_arrivals.c.join_id.in_(sorted(join_ids))))
        conn.execute(delete(joins).where(joins.c.id.in_(sorted(join_ids))))
    conn.execute(delete(idempotency_keys).where(idempotency_keys.c.job_id.in_(ids)))
    conn.execute(delete(schedule_fires).where(schedule_fires.c.root_job_id.in_(ids)))
    # Fires that started no chain (their payload did not validate) age out alike.
    conn.execute(
        delete(schedule_fires).where(
            schedule_fires.c.root_job_id.is_(None), schedule_fires.c.fired_at < cutoff
        )
    )
    removed = conn.execute(delete(jobs).where(jobs.c.root_id.in_(ids))).rowcount
    return Batch(len(ids), removed, last_root)


def _bounded(conn: Connection, roots: list[int]) -> list[int]:
    """The first of ``roots`` whose chains hold at most BATCH_JOBS jobs (at least one)."""
    sizes: dict[int, int] = dict(
        conn.execute(
            select(jobs.c.root_id, func.count())
            .where(jobs.c.root_id.in_(roots))
            .group_by(jobs.c.root_id)
        ).all()
    )
    taken: list[int] = []
    total = 0
    for root in roots:
        total += sizes.get(root, 0)
        if taken and total > BATCH_JOBS:
            break
        taken.append(root)
    return taken


def _with_join_partners(
    conn: Connection, roots: set[int], cutoff: float
) -> tuple[set[int], set[int]]:
    """The chains that may go together with their joins: (roots, join ids).

    A chain with a node at a join brings along every other chain with a node there if
    those may go too; if one of them may not, or the join still waits, none of them goes.
    """
    banned: set[int] = set()
    for _ in range(_MAX_ROUNDS):
        shared = select(jobs.c.join_id).where(
            jobs.c.root_id.in_(sorted(roots)), jobs.c.join_id.is_not(None)
        )
        links = conn.execute(
            select(jobs.c.join_id, jobs.c.root_id).where(jobs.c.join_id.in_(shared)).distinct()
        ).all()
        members: dict[int, set[int]] = defaultdict(set)
        for join_id, root_id in links:
            members[join_id].add(root_id)
        waiting = set(
            conn.execute(
                select(joins.c.id).where(
                    joins.c.id.in_(sorted(members)), joins.c.state == _WAITING_JOIN
                )
            ).scalars()
        )
        outside = {r for group in members.values() for r in group} - roots - banned
        partners = _deletable(conn, outside, cutoff)
        blocked = {j for j, group in members.items() if j in waiting or group - roots - partners}
        banned |= {r for j in blocked for r in members[j]}
        settled = (roots | partners) - banned
        if settled == roots:
            return roots, set(members)
        roots = settled
    # Still moving: keep every chain that has a join node for a later run.
    return roots - {r for group in members.values() for r in group}, set()


def purge_automation(db: Database, older_than_seconds: float, at: float | None = None) -> int:
    """Delete reconciliation ticks (with their requests), evaluations and asset events
    older than the cutoff; each asset's latest evaluation stays (it answers "why not?").
    Asset versions stay: they are the assets' data history, one row per refresh."""
    cutoff = (now() if at is None else at) - older_than_seconds
    e = asset_evaluations.c

    def work(conn: Connection) -> int:
        latest = select(func.max(e.id)).group_by(e.asset_id)
        old_ticks = select(automation_ticks.c.id).where(automation_ticks.c.started_at < cutoff)
        removed = conn.execute(
            delete(automation_requests).where(automation_requests.c.tick_id.in_(old_ticks))
        ).rowcount
        removed += conn.execute(
            delete(automation_ticks).where(automation_ticks.c.started_at < cutoff)
        ).rowcount
        removed += conn.execute(
            delete(asset_evaluations).where(e.at < cutoff, e.id.not_in(latest))
        ).rowcount
        removed += conn.execute(delete(asset_events).where(asset_events.c.at < cutoff)).rowcount
        return removed

    return int(db.write(work))
