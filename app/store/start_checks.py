"""Before a claimed job starts: is it still this worker's, and was no cancel asked?

A worker asks this before starting each job that waited in its batch, so a job cancelled
while it waited never starts its function. :class:`StartChecks` is the same check on a
connection the worker thread keeps, for a whole batch at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import bindparam, select

from app.domain.statuses import Status
from app.store.claims import Claim
from app.store.database import Database
from app.store.dialect import DriverConnection
from app.store.tables import jobs


def start_check(db: Database, claim: Claim) -> bool:
    """Whether a claimed job may start now: still held, and no cancel requested.

    A worker asks this before starting each job that waited in its batch, so a job
    cancelled while it waited never starts its function (the cancel committed before
    this read; a later cancel finds the job running and asks it to stop).
    """
    with db.read() as conn:
        row = conn.execute(_START_CHECK, {"job_id": claim.id, "token": claim.lease_token}).first()
    return row is not None and not row.cancel_requested


_START_CHECK = select(jobs.c.cancel_requested).where(
    jobs.c.id == bindparam("job_id"),
    jobs.c.lease_token == bindparam("token"),
    jobs.c.status == Status.PROCESSING.value,
)


# How old a batch check may be when a job starts on its answer: a cancel committed longer
# ago than this before a job's start always stops it.
START_CHECK_MAX_AGE_SECONDS = 0.001
# One statement checks the job about to start and the ones waiting behind it (at most a
# batch: MAX_BATCH in app/runner/worker_pool.py; unused slots repeat the first id).
_SLOTS = 16
_BATCH_CHECK = select(jobs.c.id, jobs.c.lease_token, jobs.c.status, jobs.c.cancel_requested).where(
    jobs.c.id.in_([bindparam(f"id{slot}") for slot in range(_SLOTS)])
)


class StartChecks:
    """:func:`start_check` for one worker thread: cheap enough to run before every quick job.

    One prebuilt statement on a driver connection the thread keeps, in autocommit mode
    (not a pooled transaction: about 0.5 ms of CPU per job). It reads the job about to
    start and those waiting behind it in the batch at once; a waiting job starts on that
    answer while it is at most ``max_age`` seconds old, so a batch of quick jobs costs one
    or two reads, not one per job (on PostgreSQL a round trip each: a third of the flat
    throughput). Any error drops the connection and answers through :func:`start_check`,
    with its retries.
    """

    def __init__(self, db: Database, max_age: float = START_CHECK_MAX_AGE_SECONDS):
        self._db = db
        self._max_age = max_age
        self._connection: DriverConnection | None = None
        compiled = _BATCH_CHECK.compile(dialect=db.engine.dialect)
        self._sql = str(compiled)
        self._compiled = compiled
        self._may_start: dict[int, bool] = {}
        self._checked_at = float("-inf")

    def may_start(self, claim: Claim, waiting: Sequence[Claim] = ()) -> bool:
        """Whether ``claim`` may start now; ``waiting``: the batch's jobs after it."""
        clock = time.monotonic()
        if claim.id not in self._may_start or clock - self._checked_at > self._max_age:
            batch = [claim, *waiting][:_SLOTS]
            try:
                self._may_start = self._check(batch)
            except Exception:
                self.close()
                return start_check(self._db, claim)
            self._checked_at = clock  # taken before the read: the answer is no older
        return self._may_start[claim.id]

    def _check(self, batch: list[Claim]) -> dict[int, bool]:
        ids = [c.id for c in batch]
        ids += [ids[0]] * (_SLOTS - len(ids))
        params = self._compiled.construct_params({f"id{n}": i for n, i in enumerate(ids)})
        if self._connection is None:
            self._connection = DriverConnection(self._db.engine)
        rows = self._connection.fetch_all(self._sql, self._compiled.positiontup, params)
        found = {row[0]: row for row in rows}
        verdicts = {}
        for c in batch:
            row = found.get(c.id)
            verdicts[c.id] = (
                row is not None
                and row[1] == c.lease_token
                and row[2] == Status.PROCESSING.value
                and not row[3]
            )
        return verdicts

    def close(self) -> None:
        self._may_start = {}
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()
