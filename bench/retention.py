"""Retention under a steady load on PostgreSQL: live and dead tuples, table and index sizes.

Run ``python -m bench.retention`` (PostgreSQL at ``--database-url``, default the local server;
each run uses a throw-away database created next to it). For ``--seconds`` it submits
chains of 5 NOOP jobs at ``--rate`` jobs/s, run by the real worker pool (4 threads). It does
this twice: without retention, and with retention keeping ``--keep`` seconds of finished
chains, purged every ``--every`` seconds exactly as housekeeping does (which in production
keeps ``retention_days`` and runs every minute: the same ratio at a larger scale).
Autovacuum runs as configured on the server (``autovacuum`` is printed: on this project's
development server it is off). Afterwards every connection is closed (so each backend has
flushed its statistics) and ``pg_stat_user_tables`` is read for ``jobs`` and
``job_events``; then once more after a plain ``VACUUM`` of both, which is what autovacuum
would do: dead tuples become free space that later inserts reuse.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from sqlalchemy import create_engine, func, select, text

from app.domain.payload import Limits, parse_tree
from app.domain.statuses import TERMINAL
from app.runner.worker_pool import WorkerPool
from app.store import retention, schema, submission
from app.store.database import Database
from app.store.tables import jobs
from bench.cross_process import DEFAULT_URL, fresh_database
from config import Settings
from jobs import REGISTRY

CHAIN = 5
STATS = text(
    "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, "
    "pg_total_relation_size(relid) AS total, pg_indexes_size(relid) AS indexes "
    "FROM pg_stat_user_tables WHERE relname IN ('jobs', 'job_events') ORDER BY relname"
)


def steady_load(
    url: str, seconds: float, rate: float, keep: float | None, every: float, vacuum: float
) -> Any:
    db = Database(url)
    schema.upgrade(db)
    pool = WorkerPool(db, REGISTRY, Settings(database_url=url)).start()
    node: dict[str, Any] = {"targetObject": "NOOP"}
    for _ in range(CHAIN - 1):
        node = {"targetObject": "NOOP", "nextJobs": [node]}
    spec = parse_tree(node, Limits(), REGISTRY.__contains__)
    stop = threading.Event()
    purged = [0, 0]

    def purge() -> None:
        while keep is not None and not stop.wait(every):
            chains, deleted = retention.purge_finished(db, keep)
            purged[0] += chains
            purged[1] += deleted

    def vacuum_now_and_then() -> None:
        """Stand in for autovacuum where the server has it off (``--vacuum-every``)."""
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        while vacuum and not stop.wait(vacuum):
            with engine.connect() as conn:
                conn.execute(text("VACUUM jobs, job_events"))
        engine.dispose()

    helpers = [threading.Thread(target=f, daemon=True) for f in (purge, vacuum_now_and_then)]
    for helper in helpers:
        helper.start()
    began = time.monotonic()
    submitted = 0
    while (elapsed := time.monotonic() - began) < seconds:
        due = int(elapsed * rate / CHAIN)
        while submitted < due:
            submission.submit(db, spec)
            submitted += 1
        time.sleep(0.01)
    open_jobs = jobs.c.status.not_in([s.value for s in TERMINAL])
    while True:
        with db.read() as conn:
            if not conn.execute(select(func.count()).where(open_jobs)).scalar():
                break
        time.sleep(0.1)
    stop.set()
    for helper in helpers:
        helper.join()
    pool.stop(5)
    db.dispose()  # every backend exits and flushes its table statistics
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    time.sleep(1.0)
    with admin.connect() as conn:
        stats = conn.execute(STATS).all()
        conn.execute(text("VACUUM jobs, job_events"))
        time.sleep(1.0)
        vacuumed = conn.execute(STATS).all()
    admin.dispose()
    return submitted * CHAIN, purged, stats, vacuumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=200, help="jobs per second")
    parser.add_argument("--keep", type=float, default=10, help="retention, seconds")
    parser.add_argument("--every", type=float, default=5, help="purge interval, seconds")
    parser.add_argument(
        "--vacuum-every", type=float, default=0, help="VACUUM every N s (0: autovacuum)"
    )
    args = parser.parse_args()
    print(
        f"steady load: {args.rate:g} jobs/s in chains of {CHAIN} for {args.seconds:g} s, "
        f"4 worker threads, PostgreSQL; retention keeps {args.keep:g} s, purged every "
        f"{args.every:g} s; VACUUM every {args.vacuum_every or 'never (autovacuum)'} s"
    )
    with create_engine(args.database_url).connect() as conn:
        print("server autovacuum:", conn.execute(text("SHOW autovacuum")).scalar())
    print(
        f"{'retention':10} {'when':13} {'table':11} {'n_live_tup':>10} {'n_dead_tup':>10} "
        f"{'autovac':>7} {'total kB':>9} {'index kB':>9}"
    )
    for keep in (None, args.keep):
        with fresh_database(args.database_url) as url:
            total, purged, *tables = steady_load(
                url, args.seconds, args.rate, keep, args.every, args.vacuum_every
            )
        label = "off" if keep is None else "on"
        for when, stats in zip(("after the run", "after VACUUM"), tables, strict=True):
            for row in stats:
                print(
                    f"{label:10} {when:13} {row.relname:11} {row.n_live_tup:10} "
                    f"{row.n_dead_tup:10} {row.autovacuum_count:7} {row.total // 1024:9} "
                    f"{row.indexes // 1024:9}"
                )
        print(f"{'':10} {total} jobs submitted; purged {purged[0]} chains, {purged[1]} jobs")


if __name__ == "__main__":
    main()
