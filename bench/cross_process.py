"""Cross-process wake-ups on PostgreSQL: how fast another process starts a claimable job.

Run ``python -m bench.cross_process`` (PostgreSQL at ``--database-url``, default the local
server; a throw-away database is created next to it and dropped afterwards). Two
``jobchain worker`` processes with one thread each run every scenario twice: with
``JOBCHAIN_LISTEN_NOTIFY=false`` (before: only in-process wake-ups and the 1 s idle poll)
and with LISTEN/NOTIFY (after).

1. chain: a chain of ``--hops`` NOOP jobs. Per hop the parent's recording commit (its
   ``updated_at``) -> the child's ``claimed_at``. A worker that ends a quick job claims the
   child it released in the same transaction, so a hop only crosses processes when the
   releasing worker is busy; the count of such same-commit hops is printed.
2. release: this process (like an API node, which runs no workers) makes a job claimable
   ``--releases`` times, at random moments; per release its commit (this process's clock,
   right after COMMIT returned) -> ``claimed_at`` on a worker process (the claim
   transaction's clock; same machine). Here every wake-up crosses processes.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from app.domain.payload import Limits, parse_tree
from app.runner.worker_process import READY_LINE
from app.store import schema, submission
from app.store.database import Database
from app.store.tables import jobs
from jobs import REGISTRY

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"jobchain_bench_xp_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def workers(url: str, count: int, notify: bool, logs: Path) -> Iterator[None]:
    """``count`` ``jobchain worker`` processes with one thread each, ready when yielded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(
        JOBCHAIN_DATABASE_URL=url,
        JOBCHAIN_WORKERS="1",
        JOBCHAIN_LISTEN_NOTIFY="true" if notify else "false",
    )
    script = Path(sys.executable).with_name("jobchain")
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            out = logs / f"worker-{notify}-{index}.out"
            with out.open("w") as stdout:
                proc = subprocess.Popen(
                    [str(script), "worker"], cwd=REPO, env=env, stdout=stdout, stderr=stdout
                )
            procs.append((proc, out))
        for proc, out in procs:
            while not re.search(READY_LINE, out.read_text()):
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{out.read_text()}")
                time.sleep(0.05)
        time.sleep(0.5)  # listeners connected and idle
        yield
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(30)


def wait_for(db: Database, ids: list[int], column: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as conn:
            missing = conn.execute(
                select(jobs.c.id).where(jobs.c.id.in_(ids), column.is_(None)).limit(1)
            ).first()
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.002)


def chain_hops(db: Database, hops: int) -> list[float]:
    node: dict[str, Any] = {"targetObject": "NOOP"}
    for _ in range(hops):
        node = {"targetObject": "NOOP", "nextJobs": [node]}
    root = submission.submit(
        db, parse_tree(node, Limits(max_depth=hops + 2), REGISTRY.__contains__)
    )
    with db.read() as conn:
        ids = list(conn.execute(select(jobs.c.id).where(jobs.c.root_id == root)).scalars())
    wait_for(db, ids, jobs.c.finished_at)
    with db.read() as conn:
        rows = {r.id: r for r in conn.execute(select(jobs).where(jobs.c.root_id == root))}
    return [
        row.claimed_at - rows[row.parent_id].updated_at
        for row in rows.values()
        if row.parent_id is not None
    ]


def releases(db: Database, count: int, spread: float) -> list[float]:
    """Store a one-job chain as ``submission.submit`` does, timing from its commit."""
    waits = []
    spec = parse_tree({"targetObject": "NOOP"}, Limits(), REGISTRY.__contains__)
    for _ in range(count):
        time.sleep(random.uniform(0, spread))  # arrive at any phase of the idle poll
        job_id = db.write(lambda conn: submission.insert_tree(conn, spec, []))
        committed = time.time()
        db.notify_dispatchable()
        wait_for(db, [job_id], jobs.c.claimed_at)
        with db.read() as conn:
            started = conn.execute(select(jobs.c.claimed_at).where(jobs.c.id == job_id))
            waits.append(started.scalar_one() - committed)
    return waits


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"{statistics.median(ms):8.1f} {p99:8.1f} {ms[-1]:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--hops", type=int, default=200)
    parser.add_argument("--releases", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        for notify in (False, True):
            with fresh_database(args.database_url) as url:
                db = Database(url, listen_notify=notify)
                schema.upgrade(db)
                with workers(url, args.workers, notify, Path(logs)):
                    hops = chain_hops(db, args.hops)
                    released = releases(db, args.releases, spread=1.0)
                db.dispose()
            label = "LISTEN/NOTIFY" if notify else "poll only (before)"
            same = sum(1 for h in hops if h == 0)
            rows.append((label, f"chain hop ({same}/{len(hops)} same commit)", summary(hops)))
            rows.append((label, "release -> start on a worker", summary(released)))
    print(f"{args.workers} worker processes x 1 thread, PostgreSQL; milliseconds")
    print(f"{'wake-ups':20} {'scenario':36} {'median':>8} {'p99':>8} {'max':>8}")
    for label, scenario, figures in rows:
        print(f"{label:20} {scenario:36} {figures}")


if __name__ == "__main__":
    main()
