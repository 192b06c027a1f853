"""Jobs no worker will finish: expired leases (a vanished worker) and hand-backs.

The reaper re-runs a job whose lease expired if attempts remain, else fails it
``interrupted``; a worker stuck behind a slow job hands back the jobs it never started.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import SQLAlchemyError

from app.domain.outcome import RetryPolicy, decide_outcome
from app.domain.statuses import Status, Transition, target
from app.store import callback_deadline
from app.store.claims import Claim, held
from app.store.completion import LOCK_FOR_RECORDING, attempt_of, ended_attempt_values
from app.store.database import Database, now
from app.store.release import release_next_jobs
from app.store.tables import jobs
from app.store.transitions import apply

log = logging.getLogger("jobchain.recovery")


def release_unstarted(db: Database, claims: list[Claim]) -> int:
    """Hand back claimed jobs a worker never started (it got stuck behind a slow job).

    One whose cancel was requested meanwhile is cancelled instead: it never starts.
    """

    def work(conn: Connection) -> int:
        t = now()
        ids = [c.id for c in claims]
        locked: list[Row[Any]] = list(conn.execute(LOCK_FOR_RECORDING, {"ids": ids}))
        rows = {r.id: r for r in locked}
        moved = 0
        for claim_ in claims:
            row = rows.get(claim_.id)
            if row is None or row.status != Status.PROCESSING:
                continue
            if row.cancel_requested:
                verdict = decide_outcome(
                    attempt_of(row),
                    failed=False,
                    message=None,
                    policy=RetryPolicy(),
                    started=False,
                )
                values = ended_attempt_values(None, None, verdict, t)
                if apply(
                    conn, verdict.transition, held(row.id, claim_.lease_token), at=t, values=values
                ):
                    moved += release_next_jobs(conn, row, target(verdict.transition), t)
                continue
            moved += len(
                apply(
                    conn,
                    Transition.UNCLAIM,
                    held(claim_.id, claim_.lease_token),
                    at=t,
                    values={
                        "attempt": jobs.c.attempt - 1,
                        "lease_token": None,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "started_at": None,
                        "claimed_at": None,
                    },
                )
            )
        return moved

    moved = db.write(work)
    if moved:
        db.notify_dispatchable(moved)
    return moved


def reap_expired_leases(db: Database, limit: int = 500) -> int:
    """Recover jobs whose worker vanished: re-run them if attempts remain, else fail them.

    Any process may call this at any time: each row is taken under a skip-locked row lock
    and changed by a guarded update, so one expired lease is acted on exactly once.
    """

    def work(conn: Connection) -> tuple[int, bool]:
        t = now()
        expired = conn.execute(
            select(jobs)
            .where(jobs.c.status == Status.PROCESSING.value, jobs.c.lease_expires_at < t)
            .order_by(jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        dispatchable = False
        for row in expired:
            # One savepoint per job: a job that cannot be recovered (a bug, bad data) is
            # logged and skipped instead of rolling back, forever, every other recovery.
            try:
                with conn.begin_nested():
                    dispatchable |= _recover(conn, row, t)
            except SQLAlchemyError:
                log.exception("recovering job %s failed; skipped", row.id)
        return len(expired), dispatchable

    count, dispatchable = db.write(work)
    if dispatchable:
        db.notify_dispatchable()
    return count


def _recover(conn: Connection, row: Row[Any], t: float) -> bool:
    cleared = {"lease_token": None, "lease_owner": None, "lease_expires_at": None}
    still_held = held(row.id, row.lease_token)
    values: dict[str, Any]
    if row.join_id is not None:
        # A JOIN node claimed while its join was busy, its worker gone before it arrived:
        # it arrives when claimed again (an arrival is never lost, never counted twice).
        transition = Transition.RERUN
        values = {"run_after": t, "message": f"worker {row.lease_owner} vanished; arriving again"}
    elif row.cancel_requested:
        transition, values = Transition.CANCEL, {"message": "cancelled (worker vanished)"}
    elif row.lease_owner == callback_deadline.OWNER:  # an EXTERNAL job's deadline passed
        transition, values = callback_deadline.on_deadline(row)
    elif row.attempt - row.attempt_floor < row.max_attempts:
        transition = Transition.RERUN
        values = {"run_after": t, "message": f"worker {row.lease_owner} vanished; re-running"}
    else:
        transition, values = Transition.INTERRUPT, {"message": "interrupted"}
    if transition != Transition.RERUN:
        values["finished_at"] = t
    moved = apply(
        conn,
        transition,
        still_held,
        at=t,
        only_from=Status.PROCESSING,
        values={**cleared, **values},
        ran=(row.started_at, None),  # when it stopped is unknown: its worker vanished
    )
    if not moved:
        return False
    if transition == Transition.RERUN:
        return True
    return release_next_jobs(conn, row, target(transition), t) > 0
