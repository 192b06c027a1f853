"""Scaling on PostgreSQL: 1, 2 and 4 ``jobchain worker`` processes sharing the same threads.

Run ``python -m bench.scaling`` (``make bench-scaling``). At every point (processes x threads
each, the same total: 1x4, 2x2, 4x1 by default) the real worker processes run on a fresh
throw-away database, exactly as in ``bench.peers``' ``jobchain-pg`` system, whose runner this
reuses (:class:`bench.peers.jobchain_runner.JobchainRunner`: ``<key>.BENCH`` jobs stamp their
own start and end from inside the job). Per point:

* hop: a chain of 1,000 no-op links; child start - parent end (median, p99), after a warm-up.
* flat drain: 10,000 no-op jobs enqueued with no worker running, then the workers start;
  jobs/s from the moment every slot had started a job to the last job's end (the window).
* the database's side, over the same window: commits/s of the bench's database
  (``pg_stat_database.xact_commit``) and the CPU seconds of the PostgreSQL backends serving it
  (utime + stime from ``/proc/<pid>/stat``), against the worker processes' CPU seconds; per
  1,000 jobs; and how many of its backends were running a statement, and how many of those
  were waiting on a lock (heavyweight or LWLock), on average over ``pg_stat_activity``
  samples (contention shows there; the JSON has every wait event seen). The server is shared
  with other work, so its background processes (WAL writer, checkpointer, ...) and the whole
  server are reported separately, in the JSON only.

``xact_commit`` is published by each backend at most once a second, so the window's delta
(sampled every 0.2 s) can miss up to a second of commits at either end; the run also counts
the session's exact total (before the workers start, and after they exited, when every
backend has flushed) and prints commits per job from it, and commits/s as that times jobs/s.

Options: ``--threads`` (total, default 4), ``--processes`` (default 1,2,4; each must divide
``--threads``), ``--rounds`` (default 2; the second round runs the points in reverse order, so
drift in the machine's load shows), ``--scale`` (0.1 for a smoke run), ``--pg-url``.
Figures go to ``artifacts/bench-scaling.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.core import code_version, load_average
from bench.peers.jobchain_runner import JobchainRunner
from bench.peers.measure import (
    ROOT,
    Context,
    cpu_seconds,
    flat_rate,
    log,
    process_tree,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
OUT = ROOT / "artifacts" / "bench-scaling.json"


# -- the database's side -----------------------------------------------------------------


class PgSampler(threading.Thread):
    """Every ``interval`` s: the bench database's ``xact_commit`` and the CPU seconds of the
    PostgreSQL processes: the backends connected to that database, the server's background
    processes, and the whole server (other users' databases included).

    A process's CPU is remembered after it exits (its last reading), so the sums only grow.
    Connects to the admin database, so its own queries are not counted as the bench's.
    """

    def __init__(self, admin_url: str, db_name: str, interval: float = 0.2) -> None:
        super().__init__(name="bench-pg-sampler", daemon=True)
        import psycopg

        self.db_name = db_name
        self.interval = interval
        self.conn = psycopg.connect(admin_url, autocommit=True)
        own = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        assert own is not None
        self.own_pid = int(own[0])
        self.postmaster = _ppid(self.own_pid)
        self.series: list[tuple[float, float, float, float, float]] = []
        # (time, the bench's backends running a statement, of them waiting on a lock, what
        # each active one was waiting on)
        self.activity: list[tuple[float, int, int, list[str]]] = []
        self._cpu: dict[int, float] = {}
        self._ours: set[int] = set()
        self._background: set[int] = set()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.sample()

    def commits(self) -> int:
        row = self.conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.db_name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def sample(self) -> None:
        with self._lock:
            # Autocommit: each statement is its own transaction, so a fresh stats snapshot.
            commits = self.commits()
            active = locked = 0
            waits = []
            for pid, datname, state, wait, event in self.conn.execute(
                "SELECT pid, datname, state, wait_event_type, wait_event FROM pg_stat_activity"
            ):
                if datname == self.db_name:
                    self._ours.add(pid)
                    if state == "active":
                        active += 1
                        locked += wait in ("Lock", "LWLock")
                        waits.append(f"{wait}:{event}" if wait else "CPU (no wait event)")
                elif datname is None:
                    self._background.add(pid)
            self.activity.append((time.time(), active, locked, waits))
            for pid in process_tree([self.postmaster]):
                if pid != self.postmaster and pid != self.own_pid:
                    self._cpu[pid] = max(self._cpu.get(pid, 0.0), cpu_seconds(pid))
            ours = sum(self._cpu.get(pid, 0.0) for pid in self._ours)
            background = sum(self._cpu.get(pid, 0.0) for pid in self._background)
            server = sum(self._cpu.values())
            self.series.append((time.time(), commits, ours, background, server))

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """Deltas of each series from t0 to t1 (wall-clock epoch), linear between samples."""
        with self._lock:
            series = list(self.series)
        names = ("commits", "backends_cpu_s", "background_cpu_s", "server_cpu_s")

        def at(t: float) -> list[float]:
            for (ta, *a), (tb, *b) in itertools.pairwise(series):
                if ta <= t <= tb:
                    f = (t - ta) / max(tb - ta, 1e-9)
                    return [x + (y - x) * f for x, y in zip(a, b, strict=True)]
            return list(series[-1][1:] if t > series[-1][0] else series[0][1:])

        out: dict[str, Any] = {n: b - a for n, a, b in zip(names, at(t0), at(t1), strict=True)}
        seen = [(a, k) for t, a, k, _ in self.activity if t0 <= t <= t1]
        events = Counter(w for t, _, _, ws in self.activity if t0 <= t <= t1 for w in ws)
        out["samples"] = len(seen)
        out["active_wait_events"] = dict(events.most_common())
        out["backends_active_mean"] = statistics.fmean(a for a, _ in seen) if seen else 0.0
        out["backends_waiting_on_locks_mean"] = (
            statistics.fmean(k for _, k in seen) if seen else 0.0
        )
        return out

    def settled_commits(self, timeout: float = 15.0) -> int:
        """xact_commit once it stopped moving (call after the workers exited)."""
        deadline = time.monotonic() + timeout
        last = self.commits()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.commits()
            if now == last:
                return now
            last = now
        return last

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.conn.close()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# -- one point: processes x threads ------------------------------------------------------


class ScalingRunner(JobchainRunner):
    """``jobchain-pg`` of bench.peers with ``processes`` x ``threads`` workers; the chain and
    the flat drain (no join rounds), and the database's side of the flat drain."""

    db_prefix = "jobchain_scaling"

    def __init__(self, ctx: Context, processes: int, threads: int) -> None:
        self.pg_processes = processes
        self.pg_threads = threads
        self.slots = processes * threads
        super().__init__(ctx)
        self.pg_sampler: PgSampler | None = None

    def setup(self) -> None:
        super().setup()
        assert self.db_name is not None
        self.pg_sampler = PgSampler(self.ctx.pg_url, self.db_name)
        self.pg_sampler.start()

    def teardown(self) -> None:
        try:
            if self.pg_sampler is not None:
                self.pg_sampler.stop()
        finally:
            super().teardown()

    def run_flat(self, n: int) -> dict[str, Any]:
        """As :meth:`Runner.run_flat`, plus commits and PostgreSQL CPU over the window and
        the session's exact commit count (the workers are stopped here to get it)."""
        assert self.pg_sampler is not None
        pg = self.pg_sampler
        self.sampler.set_phase("enqueue")
        keys = [f"f{i}" for i in range(n)]
        t = time.perf_counter()
        self.submit_flat(keys)
        enqueue_s = time.perf_counter() - t
        commits_before = pg.settled_commits()
        self.sampler.set_phase("session-2")
        self.sampler.set_phase("flat")
        self.start_workers()
        self.wait(keys, "flat")
        self.sampler.sample()
        pg.sample()
        stats = flat_rate(self.times.runs, keys, self.slots)
        t0, t1 = stats.pop("window")
        worker_cpu = self.sampler.cpu_between(t0, t1)
        time.sleep(1.5)  # the PostgreSQL samples after the window (stats published late)
        window = pg.between(t0, t1)
        self.sampler.set_phase("stopping")
        self.workers.stop()
        session_commits = pg.settled_commits() - commits_before
        seconds, jobs_in = stats["window_seconds"], stats["jobs_in_window"]
        per_k = 1000 / max(jobs_in, 1)
        stats.update(
            enqueue_s=enqueue_s,
            worker_cpu_s=worker_cpu,
            worker_cpu_s_per_1k=worker_cpu * per_k if worker_cpu is not None else None,
            pg_window=window,
            pg_backends_cpu_s_per_1k=window["backends_cpu_s"] * per_k,
            pg_background_cpu_s_per_1k=window["background_cpu_s"] * per_k,
            pg_server_cpu_s_per_1k=window["server_cpu_s"] * per_k,
            commits_per_s_window=window["commits"] / max(seconds, 1e-9),
            session_commits=session_commits,
            commits_per_job=session_commits / n,
            commits_per_s=session_commits / n * stats["jobs_per_s"],
            # Of the two cores: how busy the workers and the database's backends kept them.
            cores_busy=(
                (worker_cpu + window["backends_cpu_s"]) / max(seconds, 1e-9)
                if worker_cpu is not None
                else None
            ),
        )
        return stats


def run_point(
    processes: int, threads: int, scale: float, pg_url: str, timeout: float
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-scaling-{processes}x{threads}-"))
    ctx = Context(
        system="jobchain-pg",
        scale=scale,
        redis_url="",
        pg_url=pg_url,
        out=workdir / "result.json",
        timeout=timeout,
        workdir=workdir,
        workloads=("chain", "flat"),
    )
    log(f"{processes} x {threads}: load {load_average()}")
    result = ScalingRunner(ctx, processes, threads).run()
    result.update(processes=processes, threads=threads, sizes=asdict(ctx.sizes))
    if "error" in result:
        result["workdir"] = str(workdir)  # the worker logs
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- report ------------------------------------------------------------------------------


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


HEADERS = (
    "round",
    "processes",
    "threads each",
    "jobs/s",
    "hop median / p99 ms",
    "commits/s",
    "commits/job",
    "PG CPU s/1k jobs",
    "workers' CPU s/1k jobs",
    "PG share",
    "PG backends active / on locks",
    "cores busy",
    "load (1 min)",
)


def row(result: dict[str, Any]) -> tuple[str, ...]:
    flat, chain = result.get("flat", {}), result.get("chain", {})
    hop = chain.get("hop", {})
    pg = flat.get("pg_backends_cpu_s_per_1k")
    workers = flat.get("worker_cpu_s_per_1k")
    share = pg / (pg + workers) if pg is not None and workers else None
    return (
        str(result["round"]),
        str(result["processes"]),
        str(result["threads"]),
        _f(flat.get("jobs_per_s"), ",.0f"),
        f"{_f(hop.get('median_ms'), '.2f')} / {_f(hop.get('p99_ms'), '.2f')}",
        _f(flat.get("commits_per_s"), ",.0f"),
        _f(flat.get("commits_per_job"), ".3f"),
        _f(pg, ".3f"),
        _f(workers, ".3f"),
        _f(share, ".0%"),
        f"{_f(flat.get('pg_window', {}).get('backends_active_mean'), '.2f')} / "
        f"{_f(flat.get('pg_window', {}).get('backends_waiting_on_locks_mean'), '.2f')}",
        _f(flat.get("cores_busy"), ".2f"),
        f"{result['load_start'][0]:.1f}-{result['load_end'][0]:.1f}",
    )


def print_table(results: list[dict[str, Any]]) -> None:
    rows = [row(r) for r in results]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |")
    for r in results:
        if "error" in r:
            print(f"\n{r['processes']} x {r['threads']}: FAILED: {r['error']} ({r.get('workdir')})")
        elif r.get("duplicates"):
            print(f"\n{r['processes']} x {r['threads']}: {r['duplicates']} jobs ran twice")
        for note in r.get("notes", []):
            print(f"\n{r['processes']} x {r['threads']}: {note}")


def medians(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per layout, the median over rounds of the headline figures."""
    out: dict[str, dict[str, float]] = {}
    for layout in dict.fromkeys(f"{r['processes']}x{r['threads']}" for r in results):
        runs = [r for r in results if f"{r['processes']}x{r['threads']}" == layout]
        figures: dict[str, list[float]] = {}
        for r in runs:
            flat, hop = r.get("flat", {}), r.get("chain", {}).get("hop", {})
            for name, value in (
                ("jobs_per_s", flat.get("jobs_per_s")),
                ("hop_median_ms", hop.get("median_ms")),
                ("hop_p99_ms", hop.get("p99_ms")),
                ("commits_per_s", flat.get("commits_per_s")),
                ("commits_per_s_window", flat.get("commits_per_s_window")),
                ("pg_backends_cpu_s_per_1k", flat.get("pg_backends_cpu_s_per_1k")),
                ("worker_cpu_s_per_1k", flat.get("worker_cpu_s_per_1k")),
            ):
                if value is not None:
                    figures.setdefault(name, []).append(value)
        out[layout] = {k: statistics.median(v) for k, v in figures.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", type=int, default=4, help="worker threads in total")
    parser.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--rounds", type=int, default=2, help="every point this many times")
    parser.add_argument("--scale", type=float, default=1.0, help="0.1 for a smoke run")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="libpq URL of a server")
    parser.add_argument("--timeout", type=float, default=600.0, help="per workload (s)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    counts = [int(p) for p in args.processes.split(",") if p.strip()]
    if any(c < 1 or args.threads % c for c in counts):
        parser.error(f"every process count must divide --threads {args.threads}")

    header = {
        "commit": code_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m bench.scaling " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"nproc={len(os.sched_getaffinity(0))}, {platform.machine()}, "
        f"{platform.system()} {platform.release()}, python {platform.python_version()}",
        "threads_total": args.threads,
        "load_start": os.getloadavg(),
    }
    smoke = f" (--scale {args.scale:g})" if args.scale != 1 else ""
    print(f"jobchain scaling on PostgreSQL{smoke}")
    for key in ("commit", "date", "machine"):
        print(f"  {key}: {header[key]}")
    print(f"  load average at start: {load_average()} (other work shares these cores)", flush=True)

    results = []
    for round_no in range(1, args.rounds + 1):
        order = counts if round_no % 2 else list(reversed(counts))
        for processes in order:
            result = run_point(
                processes, args.threads // processes, args.scale, args.pg_url, args.timeout
            )
            result["round"] = round_no
            results.append(result)
    header["load_end"] = os.getloadavg()

    if results:
        sizes = results[0]["sizes"]
        versions = results[0].get("versions", {})
        print(
            f"\n{args.threads} worker threads in total; flat drain of {sizes['flat']:,} no-op "
            f"jobs, chain of {sizes['chain']:,}; PostgreSQL {versions.get('postgresql', '?')}"
        )
    print_table(results)
    print(f"\nload average at end: {load_average()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({**header, "medians": medians(results), "results": results}, indent=2)
    )
    print(f"raw figures: {args.out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
