"""Build a SQLite database with a million realistic jobs for the console benchmark.

    .venv/bin/python -m bench.million_jobs                 # var/bench/console.db, 1,000,000 jobs
    .venv/bin/python -m bench.million_jobs --jobs 100000 --database /tmp/small.db

The schema is the product's (migrations included). Rows are chains of 1 to 25 jobs over the
last 30 days, newest last: price lists (LPG -> CFS), datamart loads, shell and HTTP steps.
About 90 % of chains finish; in the others a job failed and what it blocked was skipped,
or the chain was cancelled; the chains of the last ten minutes are still running or waiting.
Messages read like the real ones ("skipped: job 12 (155.LPG) failed", "connection refused
by db-07:5432"). Each job gets the events its status implies (submit, ready, claim, end).

Fast because it is a bulk load: the secondary indexes are dropped, rows go in with
``executemany`` in one transaction, the events are derived by ``INSERT ... SELECT`` and the
indexes are built again at the end, exactly as the schema defines them.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Index

from app.store import schema
from app.store.database import Database
from app.store.tables import job_events, jobs

DEFAULT_PATH = Path("var/bench/console.db")
DAYS = 30

# (job type, share of jobs, target id maker)
TYPES = [
    ("LPG", 0.25, lambda r: str(r.randint(100, 999))),
    ("CFS", 0.20, lambda r: str(r.randint(1, 80))),
    ("LOAD", 0.15, lambda r: r.choice(["sales", "expenses", "stock", "orders"])),
    ("DMR", 0.12, lambda r: r.choice(["finance", "sales", "logistics"])),
    ("SHELL", 0.10, lambda r: r.choice(["flush-source", "archive", "export-csv"])),
    ("HTTP", 0.08, lambda r: r.choice(["pricing-api", "erp-sync", "webhook"])),
    ("NOOP", 0.10, lambda r: r.choice(["start", "checkpoint", "done"])),
]
FINISHED_MESSAGES = {
    "LPG": "repriced {n} articles",
    "CFS": "{n} fields calculated",
    "LOAD": "loaded {n} rows",
    "DMR": "refreshed {n} tables",
    "SHELL": "exit code 0",
    "HTTP": "HTTP 200 in {n} ms",
    "NOOP": "done",
}
FAILURES = [
    "connection refused by db-{n}:5432",
    "timed out after 600 s",
    "exit code 3: table locked by another session",
    "HTTP 503 from pricing.internal",
    "parameters.mode must be one of full, delta, got 'fast'",
    "interrupted",
    "deadlock detected while updating price list {n}",
]
PARAMETERS = (json.dumps({"mode": "delta"}), json.dumps({"mode": "full"}))
COLUMNS = [
    "id",
    "root_id",
    "parent_id",
    "position",
    "depth",
    "target_object",
    "job_type",
    "target_id",
    "parameters",
    "execute_on_error",
    "max_attempts",
    "timeout_seconds",
    "status",
    "attempt",
    "attempt_floor",
    "run_after",
    "cancel_requested",
    "blocked_by",
    "message",
    "result",
    "progress",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
]


def chains(total: int, rng: random.Random, now: float) -> Iterator[list[tuple[object, ...]]]:
    """Rows of whole chains, in id and time order, until ``total`` jobs."""
    names = [t[0] for t in TYPES]
    bounds = list(itertools.accumulate(t[1] for t in TYPES))
    makers = {t[0]: t[2] for t in TYPES}
    start = now - DAYS * 86400
    next_id = 1
    while next_id <= total:
        size = min(rng.choice([1, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 25]), total - next_id + 1)
        t = start + (next_id / total) * (DAYS * 86400 - 60)
        fate = rng.random()
        broken = None if fate < 0.9 else rng.randrange(size)
        cancelled = broken is not None and fate > 0.98
        rows, parents, ends = [], {}, {}
        for i in range(size):
            job_id = next_id + i
            parent = None if i == 0 else next_id + rng.randrange(max(0, i - 3), i)
            depth = 0 if parent is None else parents[parent] + 1
            parents[job_id] = depth
            job_type = names[min(bisect.bisect(bounds, rng.random()), len(names) - 1)]
            target_id = makers[job_type](rng)
            ready = t if parent is None else ends.get(parent)
            blocker = rows[broken] if broken is not None and broken < i else None
            status, message, blocked, started, finished = _fate(
                rng, job_type, ready, broken == i, cancelled, blocker, now
            )
            ends[job_id] = finished if status == "FINISHED" else None
            rows.append(
                (
                    job_id,
                    next_id,
                    parent,
                    i,
                    depth,
                    f"{target_id}.{job_type}",
                    job_type,
                    target_id,
                    PARAMETERS[rng.random() < 0.3],
                    False,
                    rng.choice([1, 1, 1, 3]),
                    None,
                    status,
                    1 if started else 0,
                    0,
                    ready or t,
                    False,
                    blocked,
                    message,
                    None,
                    rng.uniform(5, 95) if status == "PROCESSING" else None,
                    t,
                    finished or started or t,
                    started,
                    finished,
                )
            )
        next_id += size
        yield rows


def _fate(
    rng: random.Random,
    job_type: str,
    ready: float | None,
    breaks: bool,
    cancelled: bool,
    blocker: tuple[object, ...] | None,
    now: float,
) -> tuple[str, str | None, int | None, float | None, float | None]:
    """(status, message, blocked_by, started_at, finished_at) of one job of a chain."""
    if ready is None:  # its parent has not finished
        if blocker is None:
            return "WAITING_FOR_PARENT", None, None, None, None
        blocker_id, target, end = int(str(blocker[0])), blocker[5], blocker[24]
        if blocker[12] == "FAILED":
            return "SKIPPED", f"skipped: job {blocker_id} ({target}) failed", blocker_id, None, end  # type: ignore[return-value]
        message = f"cancelled: job {blocker_id} was cancelled"
        return "CANCELLED", message, blocker_id, None, end  # type: ignore[return-value]
    started = ready + rng.uniform(0.001, 0.05)
    # The chains of the last ten minutes run long: some are still running or waiting.
    recent = ready > now - 600
    finished = started + (rng.uniform(60, 1200) if recent else rng.expovariate(1 / 20))
    if started > now:
        return "WAITING_FOR_DISPATCH", None, None, None, None
    if finished > now:
        return "PROCESSING", "running", None, started, None
    if breaks:
        if cancelled:
            return "CANCELLED", "cancelled by request", None, started, finished
        failure = rng.choice(FAILURES).format(n=rng.randint(1, 99))
        return "FAILED", failure, None, started, finished
    message = FINISHED_MESSAGES[job_type].format(n=rng.randint(3, 5000))
    return "FINISHED", message, None, started, finished


def build(path: Path, total: int, seed: int) -> float:
    """Create the database at ``path`` (replacing it); returns the seconds it took."""
    began = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{path}")
    schema.upgrade(db)
    db.dispose()
    indexes: list[Index] = [*jobs.indexes, *job_events.indexes]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for index in indexes:
        conn.execute(f"DROP INDEX {index.name}")
    insert = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rng = random.Random(seed)
    batch: list[tuple[object, ...]] = []
    for rows in chains(total, rng, time.time()):
        batch.extend(rows)
        if len(batch) >= 50_000:
            conn.executemany(insert, batch)
            batch.clear()
    conn.executemany(insert, batch)
    _events(conn)
    conn.execute("COMMIT")
    engine = Database(f"sqlite:///{path}").engine
    for index in indexes:
        index.create(engine)
    engine.dispose()
    conn.close()
    return time.perf_counter() - began


def _events(conn: sqlite3.Connection) -> None:
    """The status history each job's row implies, as the engine would have written it."""
    conn.execute(
        "INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason) "
        "SELECT id, NULL, CASE WHEN parent_id IS NULL THEN 'WAITING_FOR_DISPATCH' "
        "ELSE 'WAITING_FOR_PARENT' END, 0, created_at, 'submit' FROM jobs"
    )
    conn.execute(
        "INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason) "
        "SELECT id, 'WAITING_FOR_PARENT', 'WAITING_FOR_DISPATCH', 0, run_after, "
        "'parent finished' FROM jobs WHERE parent_id IS NOT NULL AND started_at IS NOT NULL"
    )
    conn.execute(
        "INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason) "
        "SELECT id, 'WAITING_FOR_DISPATCH', 'PROCESSING', 1, started_at, 'claim' "
        "FROM jobs WHERE started_at IS NOT NULL"
    )
    conn.execute(
        "INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason) "
        "SELECT id, CASE WHEN started_at IS NULL THEN 'WAITING_FOR_PARENT' "
        "ELSE 'PROCESSING' END, status, attempt, finished_at, "
        "CASE status WHEN 'FINISHED' THEN 'finish' WHEN 'FAILED' THEN 'fail' "
        "WHEN 'SKIPPED' THEN 'skip' ELSE 'cancel' END "
        "FROM jobs WHERE finished_at IS NOT NULL"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seconds = build(args.database, args.jobs, args.seed)
    print(f"{args.jobs:,} jobs in {args.database} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
