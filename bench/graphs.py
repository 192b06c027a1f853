"""Dependency-graph benchmark: adding dependencies, ``order``, and a full run of a model.

Run ``python -m bench.graphs``. Like ``bench.core`` it uses a fresh SQLite file (WAL,
``synchronous=NORMAL``, product defaults) or, with ``--database-url``, a throw-away
PostgreSQL database created next to the one named and dropped afterwards.

The model: N assets (NOOP jobs) and E dependencies drawn at random (fixed ``--seed``) as a
DAG: the assets are shuffled into a hidden order and each dependency joins two distinct
assets, the earlier one upstream, so no draw closes a cycle and every add is stored.

1. add a dependency: each of the E dependencies through ``graph_changes.add_dependency``
   (the store call behind ``POST /models/{id}/dependencies``: the model's lock, both ends,
   the duplicate check, the cycle check over the model's whole graph, the insert, commit),
   timed one by one; median and p99 over all of them and over the last tenth (graph nearly
   full).
2. order: ``graphs.names_and_edges`` + ``topological_order`` + ``levels``, what ``GET
   /models/{id}/order`` computes, repeated.
3. a full run of the model (``RunService.start``, every asset) against the same work
   submitted by hand through ``SubmitService.submit``: one ChainedJobInfo payload, one job
   per asset, an asset with one upstream directly below it, an asset with several behind a
   JOIN node (one per upstream, all_success, ``expect`` = its upstream count), the roots
   below a NOOP start. Also the run's own compiled payload submitted by hand (the same jobs
   and JOIN nodes as the run, under another batch), which separates the run's bookkeeping
   from the shape of its chain. Each runs with the real WorkerPool (4 workers, product
   defaults) already started; "submit" is the call's time, "wall" is submit start -> the
   last ``finished_at`` among the chain's rows (epoch seconds), the rounds alternate.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.domain import graphs as rules
from app.domain import runs as plans
from app.services.runs import RUN_LIMITS, RunService
from app.services.submit import SubmitService
from app.store import graph_changes, graphs
from app.store.runs import RunRequest
from app.store.tables import assets, jobs, runs
from bench.core import (
    Backend,
    Harness,
    Options,
    Report,
    load_average,
    machine,
    ms,
    pct,
    print_profile,
    print_report,
)

ROLE = "admin"


def random_dag(assets: int, dependencies: int, seed: int) -> tuple[list[str], list[rules.Edge]]:
    """Asset names and (upstream, downstream) edges: a random DAG, the same for a seed."""
    rng = random.Random(seed)
    names = [f"a{i:04d}" for i in range(assets)]
    hidden = names[:]
    rng.shuffle(hidden)
    edges: set[rules.Edge] = set()
    while len(edges) < dependencies:
        i, j = rng.sample(range(assets), 2)
        if i > j:
            i, j = j, i
        edges.add((hidden[i], hidden[j]))
    ordered = sorted(edges)
    rng.shuffle(ordered)
    return names, ordered


def hand_payload(names: list[str], edges: list[rules.Edge], tag: str) -> dict[str, Any]:
    """The chain a user would write: one job per asset, single-upstream assets below their
    upstream, multi-upstream ones behind a JOIN node under each upstream
    (one join per tree: its count is its number of nodes)."""
    uphill = rules.depends_on(edges)
    order = rules.topological_order(names, edges)
    nodes = {n: {"targetObject": f"{n}.NOOP", "nextJobs": []} for n in names}
    root: dict[str, Any] = {"targetObject": f"{tag}.NOOP", "nextJobs": []}
    for name in order:
        ups = sorted(uphill.get(name, ()))
        if not ups:
            root["nextJobs"].append(nodes[name])
        elif len(ups) == 1:
            nodes[ups[0]]["nextJobs"].append(nodes[name])
        else:
            for k, up in enumerate(ups):
                join = {
                    "targetObject": f"{tag}-{name}.JOIN",
                    "nextJobs": [nodes[name]] if k == 0 else [],
                }
                nodes[up]["nextJobs"].append(join)
    return root


def compiled_payload(h: Harness, model_id: int, tag: str) -> dict[str, Any]:
    """The payload a refresh run of every asset compiles to, under batch ``tag``."""
    with h.db.read() as conn:
        rows = conn.execute(
            select(assets.c.id, assets.c.name, assets.c.job).where(assets.c.model_id == model_id)
        ).all()
        edges = graphs.graph_edges(conn, model_id)
    found = {r.name: plans.Asset(r.id, r.name, r.job) for r in rows}
    chosen = plans.refresh_set(found, edges, sorted(found), True)
    return plans.plan_refresh(model_id, found, edges, chosen, tag, {}).payload


def chain_rows(h: Harness, root_id: int) -> list[Any]:
    query = select(jobs.c.status, jobs.c.job_type, jobs.c.started_at, jobs.c.finished_at).where(
        jobs.c.root_id == root_id
    )
    with h.db.read() as conn:
        return list(conn.execute(query).all())


def timed_chain(h: Harness, submit: Any) -> dict[str, Any]:
    """Submit (``submit()`` returns the root job id), wait for the chain, read its rows."""
    epoch0, t0 = time.time(), time.perf_counter()
    root_id = submit()
    t1 = time.perf_counter()
    h.wait_done(root_id)
    rows = chain_rows(h, root_id)
    statuses = Counter(r.status for r in rows)
    return {
        "submit": t1 - t0,
        "wall": max(r.finished_at for r in rows) - epoch0,
        "first_start": min(r.started_at for r in rows) - epoch0,
        "jobs": len(rows),
        "joins": sum(1 for r in rows if r.job_type == "JOIN"),
        "statuses": dict(statuses),
    }


def run_graphs(backend: Backend, opts: Options, args: argparse.Namespace, report: Report) -> None:
    names, edges = random_dag(args.assets, args.dependencies, args.seed)
    label_add = f"1 add dependency ({args.assets:,} assets, {args.dependencies:,} deps)"
    with backend.fresh("graphs") as url:
        h = Harness(url, opts, "graphs")
        try:
            model_id = graphs.create_model(h.db, "bench", None)
            ids = {
                n: graph_changes.create_asset(
                    h.db, model_id, {"name": n, "job": {"targetObject": f"{n}.NOOP"}}
                )
                for n in names
            }
            profiler = cProfile.Profile() if args.profile else None
            times = []
            for k, (up, down) in enumerate(edges):
                if profiler is not None and k >= len(edges) - 200:
                    profiler.enable()
                t0 = time.perf_counter()
                graph_changes.add_dependency(h.db, model_id, ids[up], ids[down])
                times.append(time.perf_counter() - t0)
                if profiler is not None:
                    profiler.disable()
            tail = times[-max(1, len(times) // 10) :]
            report.add(label_add, "median (all adds)", ms(statistics.median(times)), "<= 5 ms")
            report.add(label_add, "p99 (all adds)", ms(pct(times, 99)))
            report.add(
                label_add,
                f"median / p99 (last {len(tail):,}, graph nearly full)",
                f"{ms(statistics.median(tail))} / {ms(pct(tail, 99))}",
                "<= 5 ms",
            )
            report.add(label_add, "max", ms(max(times)))
            # A closing edge is refused by the same check: time it too (nothing stored).
            refused = []
            for up, down in edges[:50]:  # the reverse of a stored dependency
                t0 = time.perf_counter()
                try:
                    graph_changes.add_dependency(h.db, model_id, ids[down], ids[up])
                except graph_changes.DependencyCycle:
                    refused.append(time.perf_counter() - t0)
            if refused:
                report.add(
                    label_add,
                    f"refused (cycle), median of {len(refused)}",
                    ms(statistics.median(refused)),
                )

            label_order = "2 order (names_and_edges + topological_order + levels)"
            order_times, read_times = [], []
            for _ in range(args.order_repeat):
                t0 = time.perf_counter()
                found = graphs.names_and_edges(h.db, model_id)
                t1 = time.perf_counter()
                assert found is not None
                rules.topological_order(*found)
                rules.levels(*found)
                order_times.append(time.perf_counter() - t0)
                read_times.append(t1 - t0)
            report.add(
                label_order, f"median of {args.order_repeat}", ms(statistics.median(order_times))
            )
            report.add(label_order, "of it reading the graph", ms(statistics.median(read_times)))
            report.add(label_order, "max", ms(max(order_times)))

            run_service = RunService(h.db, h.runtime.registry, h._settings)
            submit = SubmitService(h.db, h.runtime.registry, h._settings)
            hand = hand_payload(names, edges, "hand")

            def by_run() -> int:
                run_id = run_service.start(model_id, RunRequest(), ROLE)
                with h.db.read() as conn:
                    return int(
                        conn.execute(
                            select(runs.c.root_job_id).where(runs.c.id == run_id)
                        ).scalar_one()
                    )

            def by_hand() -> int:
                return submit.submit(hand, ROLE).root_id

            counter = iter(range(1_000_000))

            def compiled_by_hand() -> int:
                payload = compiled_payload(h, model_id, f"hand-{next(counter)}")
                chain = submit.prepare(payload, ROLE, RUN_LIMITS)
                return submit.store(chain).root_id

            h.start_pool()
            results: dict[str, list[dict[str, Any]]] = {"run": [], "hand": [], "compiled": []}
            kinds = [("run", by_run), ("hand", by_hand), ("compiled", compiled_by_hand)]
            for _ in range(args.rounds):
                for kind, fn in kinds:
                    results[kind].append(timed_chain(h, fn))
        finally:
            h.close(report)

    titles = {
        "run": "3 full run (RunService.start, all assets)",
        "hand": "3 hand-written chain (SubmitService.submit)",
        "compiled": "3 the run's compiled payload by hand",
    }
    for kind, found_runs in results.items():
        label = titles[kind]
        first = found_runs[0]
        report.add(label, "jobs (of them JOIN nodes)", f"{first['jobs']:,} ({first['joins']:,})")
        for key, name in (("submit", "submit"), ("wall", "wall: submit -> last job finished")):
            values = [r[key] for r in found_runs]
            report.add(
                label,
                f"{name}, median of {len(values)} (min-max)",
                f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})",
            )
        bad = [r["statuses"] for r in found_runs if set(r["statuses"]) != {"FINISHED"}]
        if bad:
            report.notes.append(f"{kind}: not all jobs FINISHED: {bad}")
    hand_wall = statistics.median(r["wall"] for r in results["hand"])
    run_wall = statistics.median(r["wall"] for r in results["run"])
    report.add(titles["run"], "wall / hand-written wall", f"{run_wall / hand_wall:.2f}x", "<= 1.5x")
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("cumulative").print_stats(25)
        report.notes.append("cProfile of the last 200 adds (cumulative):\n" + out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.graphs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite file)")
    parser.add_argument("--assets", type=int, default=1_000)
    parser.add_argument("--dependencies", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--order-repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each chain")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the last 200 adds")
    parser.add_argument(
        "--profile-workers",
        type=Path,
        metavar="DIR",
        help="cProfile the worker threads during the runs (DIR/graphs-workers.prof)",
    )
    args = parser.parse_args(argv)
    opts = Options(
        workers=args.workers,
        poll_seconds=args.poll_ms / 1000,
        sql_stats=False,
        profile_dir=args.profile_workers,
        timeout=args.timeout,
    )
    backend = Backend(args.database_url)
    report = Report()
    try:
        print("jobchain graph benchmark")
        for line in machine(backend, opts):
            print(f"  {line}")
        print(f"  model: {args.assets} assets, {args.dependencies} dependencies, seed {args.seed}")
        print(flush=True)
        run_graphs(backend, opts, args, report)
    finally:
        backend.close()
    print_report(report)
    print(f"\nload average at end: {load_average()}")
    if args.profile_workers is not None:
        print_profile(args.profile_workers / "graphs-workers.prof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
