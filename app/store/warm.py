"""Compiling a worker's once-per-join statements before its first join.

The hop of a job with a JOIN node below and a join's firing are the largest statements a
worker sends, and the firing runs once per join: compiled by SQLAlchemy on first use (about
5 ms each here) and prepared by PostgreSQL on first run, they made a fresh worker's first
joins several times slower than the rest. A worker pool runs both once at start, with
parameters that match no row: nothing changes, and its connection keeps them prepared.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from app.domain.join_rules import FIRED
from app.store.completion import Done, Outcome, unread_params
from app.store.database import Database, now
from app.store.firing import Hand, fire
from app.store.hop import finish_and_hand_off

log = logging.getLogger("jobchain.store")


def warm_up(db: Database) -> None:
    """PostgreSQL: run the join's statements once, changing nothing (a failure is only
    logged: the first join then compiles them)."""
    if db.is_sqlite:
        return
    t = now()
    lease = {"token": "", "owner": "", "expires": t, "now": t}
    # The parameters a worker's hop sends (their names are part of the compiled statement).
    nothing = Done(0, "", Outcome(failed=False, started_at=t, finished_at=t), joins_below=True)
    finished = unread_params(nothing, t)
    decision = {"b_join": 0, "counts": {}, "b_state": FIRED, "b_at": t, "b_by": None, "at": t}

    def work(conn: Connection) -> None:
        # No job 0 finishes, no join 0 decides: both answer "nothing happened".
        finish_and_hand_off(conn, {**finished, **lease, "limit": 1}, arrive=True)
        fire(conn, decision, Hand(lease, 1))

    try:
        db.write(work, ping=False)
    except Exception:
        log.exception("warming the join's statements failed")
