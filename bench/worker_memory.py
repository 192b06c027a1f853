"""Memory of a ``jobchain worker`` process: at rest, and at its peak under a flat load.

Run ``python -m bench.worker_memory`` from a checkout (``--tree DIR`` measures another
checkout's code with this one's script, e.g. an older commit in a ``git worktree``). It
starts ``python -m app.cli worker`` on a fresh SQLite database, reads the process's PSS
(``/proc/PID/smaps_rollup``) once it is ready, then stores N independent NOOP jobs (one
transaction each, while the worker runs them), samples PSS every 10 ms until all have
finished, and prints both with the web-stack modules the worker loaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

READY = "jobchain worker ready"
WEB_STACK = ("flask", "werkzeug", "waitress", "jinja2", "requests")


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError("no Pss line")


def loaded_web_stack(tree: Path) -> list[str]:
    check = (
        "import sys, app.runner.worker_process as _\n"
        if (tree / "app" / "runner").exists()
        else "import sys, app." + "worker_process as _\n"  # an older layout
    ) + f"print(','.join(m for m in {WEB_STACK!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=tree, capture_output=True, text=True, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="checkout to measure")
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    tree = args.tree.resolve()
    folder = Path(tempfile.mkdtemp(prefix="jobchain-memory-"))
    url = f"sqlite:///{folder / 'jobchain.db'}"
    env = {**os.environ, "JOBCHAIN_DATABASE_URL": url, "PYTHONPATH": str(tree)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if READY in line:
                break
        time.sleep(1.0)  # let start-up allocations settle (a benchmark, not a test)
        at_rest = pss_kib(worker.pid)
        peak, seconds = under_load(url, tree, worker.pid, args.jobs)
    finally:
        worker.terminate()
        worker.wait(30)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    print(f"jobchain worker memory (code {commit}, {tree})")
    print(f"  web stack loaded by the worker: {', '.join(loaded_web_stack(tree)) or 'none'}")
    print(f"  PSS at rest:                    {at_rest / 1024:6.1f} MiB")
    print(f"  PSS peak, {args.jobs:,} NOOP jobs:    {peak / 1024:6.1f} MiB  ({seconds:.1f} s)")


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
