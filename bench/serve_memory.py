"""Does a ``jobchain serve`` process grow from one workload to the next?

``python -m bench.serve_memory [--repetitions 3] [--database-url URL]`` runs the peer
benchmark's three workloads (a flat backlog of ``--flat-jobs`` NOOPs, 10,000 by default;
a chain 60 deep; a join 100 -> 1) several times against one ``jobchain serve`` process,
and prints its PSS peak during and PSS after each workload. The jobs are stored by a child
process through the store (as ``bench.peers`` does), so only the serving process's own
work is in its memory.

``--tracemalloc`` runs the same process's pieces in this interpreter instead (the Flask
app on waitress, the worker pool, housekeeping, schedules, alerts and automation, as
``app.server.serve`` assembles them), traces Python allocations (slow: use a smaller
``--flat-jobs``) and prints what grew between the end of the first repetition and the end
of the last, by source line: what a repetition leaves behind.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench.worker_memory import fresh_database, pss_kib, upgrade

WORKLOADS = ("flat", "chain", "join")
SUBMIT = """
import sys
from app.domain.payload import Limits, parse_tree
from app.domain.join_plan import plan_joins
from app.store import submission
from app.store.database import Database

url, workload, tag, flat = sys.argv[1:5]
db = Database(url, pool_size=2)
limits = Limits(max_depth=10_000, max_nodes=20_000)
known = lambda name: True
if workload == "flat":
    specs = [parse_tree({"targetObject": f"f{tag}-{n}.NOOP"}, limits, known)
             for n in range(int(flat))]
    for i in range(0, len(specs), 500):
        db.write(lambda conn, c=specs[i:i + 500]: [submission.insert_tree(conn, s, []) for s in c])
    db.notify_dispatchable()
elif workload == "chain":
    node = {"targetObject": f"c{tag}-59.NOOP"}
    for n in reversed(range(59)):
        node = {"targetObject": f"c{tag}-{n}.NOOP", "nextJobs": [node]}
    submission.submit(db, parse_tree(node, limits, known))
else:
    join, last = {"targetObject": f"jk{tag}.JOIN"}, {
        "targetObject": f"jk{tag}.JOIN", "nextJobs": [{"targetObject": f"j{tag}.NOOP"}]}
    root = parse_tree({"targetObject": f"r{tag}.NOOP", "nextJobs": [
        {"targetObject": f"p{tag}-{n}.NOOP", "nextJobs": [last if n == 99 else join]}
        for n in range(100)]}, limits, known)
    submission.submit(db, root, plan_joins(root))
db.dispose()
"""
TERMINAL = "('FINISHED', 'FAILED', 'CANCELLED', 'SKIPPED')"
WAIT_SECONDS = 600.0


class PeakSampler:
    """PSS of ``pid`` every 50 ms on a thread; ``take()`` returns the peak and resets it."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, pss_kib(self.pid))

    def take(self) -> float:
        peak, self.peak = max(self.peak, pss_kib(self.pid)), 0
        return peak / 1024

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def run_workload(url: str, tree: Path, workload: str, tag: str, flat: int) -> float:
    """Store one workload from a child process, wait until every job has ended."""
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", SUBMIT, url, workload, tag, str(flat)]
    subprocess.run(command, cwd=tree, env=env, check=True)
    engine = create_engine(url)
    open_jobs = (
        select(func.count()).select_from(text("jobs")).where(text(f"status NOT IN {TERMINAL}"))
    )
    try:
        while True:
            with engine.connect() as conn:
                if conn.execute(open_jobs).scalar_one() == 0:
                    break
            if time.monotonic() - started > WAIT_SECONDS:
                raise RuntimeError(f"{workload} {tag}: jobs still open after {WAIT_SECONDS} s")
            time.sleep(0.05)
    finally:
        engine.dispose()
    return time.monotonic() - started


def in_process(url: str, workers: int) -> Any:
    """What ``jobchain serve`` runs, in this process; returns a stop function."""
    from waitress.server import create_server

    from app.runner.background import Background
    from app.runner.process_setup import configure_logging
    from app.runtime import Runtime
    from app.web import create_app
    from config import Settings

    configure_logging()
    settings = Settings.from_env(database_url=url, workers=workers, port=0)
    runtime = Runtime.create(settings)
    app = create_app(runtime=runtime)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    background = Background(runtime).start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        server.close()
        background.stop(5.0)
        runtime.db.dispose()

    return stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="checkout to measure")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (default SQLite)")
    parser.add_argument("--tracemalloc", action="store_true", help="in this process, traced")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--flat-jobs", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=10, help="tracemalloc's traceback depth")
    args = parser.parse_args()
    tree = args.tree.resolve()
    with fresh_database(args.database_url) as url:
        env = {**os.environ, "JOBCHAIN_DATABASE_URL": url, "PYTHONPATH": str(tree)}
        upgrade(tree, env)
        snapshots: list[tracemalloc.Snapshot] = []
        if args.tracemalloc:
            tracemalloc.start(args.frames)
            stop = in_process(url, workers=2)
            pid = os.getpid()
        else:
            env["JOBCHAIN_API_TOKENS"] = "admin:bench-serve-memory"
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", "0", "--workers", "2"],
                cwd=tree,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                if "jobchain API listening" in line:
                    break
            pid = proc.pid

            def stop() -> None:
                proc.terminate()
                proc.wait(30)

        try:
            time.sleep(1.0)
            print(f"serve PSS at rest: {pss_kib(pid) / 1024:.1f} MiB", flush=True)
            sampler = PeakSampler(pid)
            print("repetition: workload seconds, PSS peak during it / after it (MiB)")
            for rep in range(1, args.repetitions + 1):
                figures = []
                for workload in WORKLOADS:
                    seconds = run_workload(url, tree, workload, f"{rep}", args.flat_jobs)
                    peak = sampler.take()
                    after = pss_kib(pid) / 1024
                    figures.append(f"{workload} {seconds:.1f} s {peak:.1f} / {after:.1f}")
                if args.tracemalloc:
                    gc.collect()
                    snapshots.append(tracemalloc.take_snapshot())
                    traced = tracemalloc.get_traced_memory()[0] / 2**20
                    figures.append(f"traced {traced:.1f} MiB")
                print(f"repetition {rep}: " + ", ".join(figures), flush=True)
            sampler.close()
        finally:
            stop()
    if len(snapshots) >= 2:
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        first, last = (s.filter_traces(keep) for s in (snapshots[0], snapshots[-1]))
        print(f"grew between repetition 1 and {len(snapshots)} (by line):")
        for stat in last.compare_to(first, "lineno")[: args.top]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}  {stat.traceback}")
        print("by traceback, the largest:")
        for stat in last.compare_to(first, "traceback")[:3]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}")
            for line in stat.traceback.format(limit=12):
                print("    " + line)


if __name__ == "__main__":
    main()
