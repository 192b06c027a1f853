"""JOIN-heavy benchmark: a model-shaped graph of JOIN nodes, and 100 -> 1 fan-ins.

Run ``python -m bench.joins`` (SQLite file) or with ``--database-url`` (a throw-away
PostgreSQL database next to the one named, as ``bench.core``). The real Runtime and
WorkerPool (4 threads, product defaults) do the work, already started.

1. graph: the hand-written chain of ``bench.graphs`` for a random DAG of ``--assets`` assets
   and ``--dependencies`` dependencies (one NOOP per asset; an asset with several upstreams
   behind a JOIN node under each upstream), submitted ``--rounds`` times one after another;
   wall = submit start -> the last ``finished_at`` among the chain's rows.
2. fan-in: root -> ``--width`` parents -> a JOIN node under each -> B, ``--fanin-rounds``
   times one after another. The parents and B are STAMP jobs, which note ``time.time()``
   when their function ends (parents) or starts (B), as the peer benchmark's jobs do:
   "job end -> B start" is the latency a user sees, batching included. "recorded end ->
   B start" is the same from the rows (``finished_at`` is stamped by the transaction that
   records the end).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter

from app.domain.payload import JobSpec
from app.services.submit import SubmitService
from app.store import submission
from bench.core import Backend, Harness, Options, Report, load_average, machine, ms, pct
from bench.core import print_report as print_table
from bench.graphs import ROLE, chain_rows, hand_payload, random_dag
from jobs.context import JobContext


class Stamps:
    """STAMP jobs note when their function ran: ends of parents, starts of B."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ends: dict[int, float] = {}
        self.starts: dict[int, float] = {}

    def run(self, ctx: JobContext) -> None:
        t = time.time()
        with self.lock:
            self.starts.setdefault(ctx.job_id, t)
            self.ends[ctx.job_id] = time.time()


def fan_in(width: int) -> JobSpec:
    """root -> ``width`` STAMP parents -> one JOIN node under each -> STAMP B."""
    tail = JobSpec(target_object="B", job_type="STAMP", target_id=None)
    parents = [
        JobSpec(
            target_object="P",
            job_type="STAMP",
            target_id=None,
            next_jobs=[
                JobSpec(
                    target_object="bench.JOIN",
                    job_type="JOIN",
                    target_id="bench",
                    next_jobs=[tail] if k == width - 1 else [],
                )
            ],
        )
        for k in range(width)
    ]
    return JobSpec(target_object="root", job_type="NOOP", target_id=None, next_jobs=parents)


def run_graph(h: Harness, args: argparse.Namespace, report: Report) -> None:
    names, edges = random_dag(args.assets, args.dependencies, args.seed)
    submit = SubmitService(h.db, h.runtime.registry, h._settings)
    walls, counts = [], Counter[str]()
    jobs_in_chain = nodes = 0
    for k in range(args.rounds):
        payload = hand_payload(names, edges, f"hand{k}")
        epoch0 = time.time()
        root_id = submit.submit(payload, ROLE).root_id
        h.wait_done(root_id)
        rows = chain_rows(h, root_id)
        walls.append(max(r.finished_at for r in rows) - epoch0)
        counts.update(r.status for r in rows)
        jobs_in_chain, nodes = len(rows), sum(r.job_type == "JOIN" for r in rows)
    label = f"1 graph ({args.assets} assets, {args.dependencies} deps, {args.rounds} rounds)"
    report.add(label, "jobs (of them JOIN nodes)", f"{jobs_in_chain:,} ({nodes:,})")
    report.add(
        label,
        "wall: submit -> last finished, median (min-max)",
        f"{statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})",
    )
    report.add(label, "jobs/s (median wall)", f"{jobs_in_chain / statistics.median(walls):,.0f}")
    if set(counts) != {"FINISHED"}:
        report.notes.append(f"graph: not all jobs FINISHED: {dict(counts)}")


def run_fanins(h: Harness, stamps: Stamps, args: argparse.Namespace, report: Report) -> None:
    seen, recorded, walls = [], [], []
    for _ in range(args.fanin_rounds):
        t0 = time.perf_counter()
        root_id = submission.submit(h.db, fan_in(args.width))
        h.wait_done(root_id)
        walls.append(time.perf_counter() - t0)
        rows = h.rows(root_id)
        parents = [r for r in rows if r.parent_id == root_id]
        [b] = [r for r in rows if r.job_type == "STAMP" and r.parent_id != root_id]
        with stamps.lock:
            last_end = max(stamps.ends[p.id] for p in parents)
            b_start = stamps.starts[b.id]
        seen.append(b_start - last_end)
        recorded.append(b.started_at - max(p.finished_at for p in parents))
        if {r.status for r in rows} != {"FINISHED"}:
            report.notes.append(f"fan-in: not all FINISHED: {Counter(r.status for r in rows)}")
    label = f"2 fan-in (1 -> {args.width} -> join -> 1, {args.fanin_rounds} rounds)"
    report.add(label, "job end -> B start, median / p99", _median_p99(seen), "<= 2.5 ms")
    report.add(label, "recorded end -> B start, median / p99", _median_p99(recorded))
    report.add(label, "wall per round, median", f"{statistics.median(walls) * 1000:.0f} ms")


def _median_p99(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} / {ms(pct(values, 99))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.joins", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite file)")
    parser.add_argument("--assets", type=int, default=300)
    parser.add_argument("--dependencies", type=int, default=900)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="graph runs")
    parser.add_argument("--width", type=int, default=100, help="fan-in parents")
    parser.add_argument("--fanin-rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    opts = Options(
        workers=args.workers,
        poll_seconds=args.poll_ms / 1000,
        sql_stats=False,
        profile_dir=None,
        timeout=args.timeout,
    )
    backend = Backend(args.database_url)
    report = Report()
    stamps = Stamps()
    try:
        print("jobchain JOIN benchmark")
        for line in machine(backend, opts):
            print(f"  {line}")
        print(flush=True)
        with backend.fresh("joins") as url:
            h = Harness(url, opts, "joins")
            try:
                h.runtime.registry.register("STAMP", stamps.run, "bench: note start and end")
                h.start_pool()
                run_graph(h, args, report)
                run_fanins(h, stamps, args, report)
            finally:
                h.close(report)
    finally:
        backend.close()
    print_table(report)
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
