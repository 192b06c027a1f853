"""Memory of a ``jobchain worker`` process: at rest, and at its peak under a flat load.

Run ``python -m bench.worker_memory`` from a checkout (``--tree DIR`` measures another
checkout's code with this one's script, e.g. an older commit in a ``git worktree``). It
brings a fresh database to the newest schema (``jobchain db upgrade``, as a deployment does
before its workers start; ``--unmigrated`` leaves that to the worker), starts
``python -m app.cli worker`` on it, reads the process's PSS (``/proc/PID/smaps_rollup``)
once it is ready, then stores N independent NOOP jobs (one transaction each, while the
worker runs them), samples PSS every 10 ms until all have finished, and prints both.

A second start of the same worker under ``python -X importtime`` lists what it imported
before it was ready: the number of modules, their import time, and which of the packages a
worker should not need it loaded. The database is a SQLite file, or with
``--database-url`` a throw-away PostgreSQL database created next to the one named.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

READY = "jobchain worker ready"
# Packages a worker at rest should not load (the web stack, and what only migrations,
# the CLI's HTTP client or the old housekeeping scheduler needed).
NOT_NEEDED = (
    "flask",
    "werkzeug",
    "waitress",
    "jinja2",
    "requests",
    "alembic",
    "mako",
    "apscheduler.schedulers",
    "smtplib",
)


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError("no Pss line")


@contextmanager
def fresh_database(admin_url: str | None) -> Iterator[str]:
    if admin_url is None:
        folder = Path(tempfile.mkdtemp(prefix="jobchain-memory-"))
        try:
            yield f"sqlite:///{folder / 'jobchain.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"jobchain_memory_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def upgrade(tree: Path, env: dict[str, str]) -> None:
    """``jobchain db upgrade`` with ``tree``'s code, as a deployment does before its
    processes start."""
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )


def start_worker(
    tree: Path, env: dict[str, str], *flags: str, stderr: Any = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """``python [flags] -m app.cli worker``, returned once it printed its ready line."""
    worker = subprocess.Popen(
        [sys.executable, *flags, "-m", "app.cli", "worker"],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert worker.stdout is not None
    for line in worker.stdout:
        if READY in line:
            return worker
    worker.wait(30)
    raise RuntimeError(f"the worker ended before it was ready (exit code {worker.returncode})")


def stop(worker: subprocess.Popen[str]) -> None:
    worker.terminate()
    worker.wait(30)


def imports_at_start(tree: Path, env: dict[str, str]) -> tuple[int, float, list[str]]:
    """Modules imported until ready (``-X importtime``): count, seconds (the sum of the
    top-level imports' cumulative times) and the unneeded packages among them."""
    with tempfile.TemporaryFile("w+") as log:
        stop(start_worker(tree, env, "-X", "importtime", stderr=log))
        log.seek(0)
        lines = log.read().splitlines()
    modules, total_us = [], 0
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        modules.append(name.strip())
        if not name.startswith("  "):  # a top-level import: its time includes its children
            total_us += int(cumulative)
    loaded = [p for p in NOT_NEEDED if any(m == p or m.startswith(p + ".") for m in modules)]
    return len(modules), total_us / 1e6, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="checkout to measure")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server's URL (default: SQLite)"
    )
    parser.add_argument(
        "--unmigrated",
        action="store_true",
        help="start the worker on an empty database (it migrates it itself)",
    )
    args = parser.parse_args()
    tree = args.tree.resolve()
    with fresh_database(args.database_url) as url:
        env = {**os.environ, "JOBCHAIN_DATABASE_URL": url, "PYTHONPATH": str(tree)}
        if not args.unmigrated:
            upgrade(tree, env)
        worker = start_worker(tree, env)
        try:
            time.sleep(1.0)  # let start-up allocations settle (a benchmark, not a test)
            at_rest = pss_kib(worker.pid)
            peak, seconds = under_load(url, tree, worker.pid, args.jobs)
            after = pss_kib(worker.pid)
        finally:
            stop(worker)
        if not args.unmigrated:
            count, import_seconds, loaded = imports_at_start(tree, env)
    if args.unmigrated:  # on an empty database again: the first worker migrated this one
        with fresh_database(args.database_url) as url:
            env = {**os.environ, "JOBCHAIN_DATABASE_URL": url, "PYTHONPATH": str(tree)}
            count, import_seconds, loaded = imports_at_start(tree, env)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    store = make_url(url).get_backend_name()
    start = "empty database, the worker migrates" if args.unmigrated else "schema at head"
    print(f"jobchain worker memory (code {commit}, {tree}; {store}, {start})")
    print(f"  imported before ready:          {count} modules, {import_seconds:.2f} s")
    print(f"  of them not needed at rest:     {', '.join(loaded) or 'none'}")
    print(f"  PSS at rest:                    {at_rest / 1024:6.1f} MiB")
    print(f"  PSS peak, {args.jobs:,} NOOP jobs:    {peak / 1024:6.1f} MiB  ({seconds:.1f} s)")
    print(f"  PSS after the load:             {after / 1024:6.1f} MiB")


def under_load(url: str, tree: Path, pid: int, count: int) -> tuple[int, float]:
    """Store ``count`` jobs with the tree's own store (a child process), sample PSS until
    the worker has finished them all."""
    store = (
        "import sys\n"
        "from app.store.database import Database\n"
        f"db = Database({url!r})\n"
        "from app.store import submission\n"
        "try:\n    from app.domain.payload import JobSpec\n"
        "except ImportError:\n    from app.payload import JobSpec\n"
        f"for _ in range({count}):\n"
        "    submission.submit(db, JobSpec(target_object='m.NOOP', job_type='NOOP',"
        " target_id='m', parameters={}))\n"
    )
    storing = subprocess.Popen([sys.executable, "-c", store], cwd=tree)
    engine = create_engine(url)
    peak, start = 0, time.monotonic()
    done = select(func.count()).select_from(text("jobs")).where(text("status = 'FINISHED'"))
    while True:
        peak = max(peak, pss_kib(pid))
        if storing.poll() is not None:
            with engine.connect() as conn:
                if conn.execute(done).scalar_one() >= count:
                    break
        time.sleep(0.01)
    engine.dispose()
    if storing.returncode:
        raise RuntimeError("storing the jobs failed")
    return peak, time.monotonic() - start


if __name__ == "__main__":
    main()
