"""Engine benchmark: throughput, chain hop latency, fan-out and payload acceptance.

Run ``python -m bench.core`` (``make bench``). By default it uses the embedded database
exactly as the product does (a SQLite file, WAL, ``synchronous=NORMAL``; here in a temporary
directory) with the product's default settings (4 worker threads). ``--database-url`` points
it at PostgreSQL instead: the URL names a server and an existing database to connect to
(e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); every scenario runs in a
fresh throw-away database created next to it and dropped afterwards.

Every scenario gets a fresh database, the real
:class:`app.runner.worker_pool.WorkerPool` and the real
:class:`app.store.database.Database` (built by :class:`app.runtime.Runtime`, as ``jobchain
serve`` does). Completion is detected by polling a count query every few
milliseconds; latencies come from the rows' own ``started_at`` / ``finished_at`` (epoch
seconds: when each job's function really started and ended, stamped by its worker thread),
wall times from ``time.perf_counter``.

Scenarios:

1. throughput: N independent NOOP jobs (one ``submission.submit`` each, before the workers
   start); jobs/s from the first claim to the last finish.
2. chain: one nested payload of D NOOPs; per hop, parent ``finished_at`` -> child
   ``started_at`` (median, p99, max) and the chain's total time.
3. fan-out: one NOOP root with F NOOP children; root end -> last child start / end.
4. accept: 10,000-node payloads (wide, 3 levels, a 10,000-deep chain) and a 1,000-deep
   chain, decoded as the API does (``jsontext.loads``), through ``parse_tree`` (validation,
   product limits) and ``submission.submit`` (one transaction), separately and together;
   then each POSTed to ``/api/v1/jobs`` over real HTTP (waitress on loopback) until 201.

Options: ``--quick`` (small sizes, a smoke run), ``--workers``, ``--only``,
``--sql-stats`` (statements, transactions, claims and wake-ups per job; instrumentation adds
a little overhead, so figures are printed without it by default) and ``--profile DIR``
(cProfile of every worker thread and of the accept path, top functions printed).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import platform
import pstats
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from app.domain import jsontext
from app.domain.payload import JobSpec, Limits, PayloadError, parse_tree
from app.domain.statuses import Status
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import claims, completion, submission
from app.store.database import Database
from app.store.tables import jobs
from config import Settings

NOT_DONE = [
    Status.WAITING_FOR_PARENT.value,
    Status.WAITING_FOR_DISPATCH.value,
    Status.PROCESSING.value,
]


@dataclass(frozen=True)
class Sizes:
    throughput: int = 10_000
    chain: int = 1_000
    fanout: int = 1_000
    fanin: int = 1_000
    accept: int = 10_000
    accept_repeat: int = 3


FULL = Sizes()
QUICK = Sizes(throughput=500, chain=100, fanout=100, fanin=100, accept=2_000, accept_repeat=1)


@dataclass
class Row:
    scenario: str
    metric: str
    value: str
    target: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, metric: str, value: str, target: str = "") -> None:
        self.rows.append(Row(scenario, metric, value, target))


# -- databases ---------------------------------------------------------------------------


class Backend:
    """Hands out a fresh, empty database URL per scenario and cleans up after it."""

    def __init__(self, database_url: str | None) -> None:
        self.admin_url = database_url
        self.is_sqlite = database_url is None or make_url(database_url).get_backend_name() == (
            "sqlite"
        )
        self._tmp = Path(tempfile.mkdtemp(prefix="jobchain-bench-"))

    def describe(self) -> str:
        if self.is_sqlite:
            return f"SQLite file in {self._tmp} (WAL, synchronous=NORMAL)"
        shown = make_url(self.admin_url or "").render_as_string(hide_password=True)
        return f"PostgreSQL {self.server_version()} via {shown} (temp database per scenario)"

    def server_version(self) -> str:
        engine = create_engine(self.admin_url or "")
        try:
            with engine.connect() as conn:
                return str(conn.execute(text("SHOW server_version")).scalar())
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def fresh(self, name: str) -> Iterator[str]:
        if self.is_sqlite:
            path = self._tmp / f"{name}-{uuid.uuid4().hex[:6]}.db"
            yield f"sqlite:///{path}"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        admin = create_engine(self.admin_url or "", isolation_level="AUTOCOMMIT")
        db_name = f"jobchain_bench_{name}_{uuid.uuid4().hex[:8]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{db_name}"'))
            url = make_url(self.admin_url or "").set(database=db_name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


# -- instrumentation (only with --sql-stats / --profile) ---------------------------------


_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


class Stats:
    """Counts SQL statements, transactions, claims and wake-ups during one scenario."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: Counter[str] = Counter()
        self.statement_seconds: Counter[str] = Counter()  # client-side: send to last row
        self.commits = 0
        self.rollbacks = 0
        self.claim_calls = 0
        self.empty_claims = 0
        self.claim_seconds = 0.0
        self.finish_calls = 0
        self.finish_seconds = 0.0
        self.wakes = 0
        self.pings = 0
        self.postgres = False

    def attach(self, db: Database) -> Callable[[], None]:
        engine = db.engine

        def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if conn.get_execution_options().get("bench_poll"):
                return
            words = statement.lstrip().split(None, 1)
            kind = words[0].upper() if words else "?"
            if kind in {"BEGIN", "COMMIT", "ROLLBACK"}:
                key = " ".join(statement.split()[:2]).upper()
            else:
                table = _TABLE.search(statement)
                key = f"{kind} {table.group(1) if table else ''}".strip()
                if kind == "UPDATE" and "SELECT" in statement.upper():
                    key += " (with subquery)"
            with self.lock:
                self.statements[key] += 1
            conn.info["bench_statement"] = (key, time.perf_counter())

        def after(conn: Any, *_args: Any) -> None:
            started = conn.info.pop("bench_statement", None)
            if started is not None:
                with self.lock:
                    self.statement_seconds[started[0]] += time.perf_counter() - started[1]

        def on_commit(conn: Any) -> None:
            if not _sends_transaction(conn):
                return
            with self.lock:
                self.commits += 1

        def on_rollback(conn: Any) -> None:
            if not _sends_transaction(conn):
                return
            with self.lock:
                self.rollbacks += 1

        # Pool pings bypass the cursor events: count them at the dialect, except the
        # harness's own (its completion poll runs on the main thread).
        self.postgres = engine.dialect.name == "postgresql"
        real_ping = engine.dialect.do_ping

        def ping(dbapi_connection: Any) -> bool:
            if threading.current_thread() is not threading.main_thread():
                with self.lock:
                    self.pings += 1
            return bool(real_ping(dbapi_connection))

        engine.dialect.do_ping = ping  # type: ignore[method-assign]
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "commit", on_commit)
        event.listen(engine, "rollback", on_rollback)

        real_claim, real_finish = claims.claim, completion.finish

        def claim(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            got = real_claim(*args, **kwargs)
            with self.lock:
                self.claim_calls += 1
                self.empty_claims += not got
                self.claim_seconds += time.perf_counter() - t0
            return got

        def finish(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            got = real_finish(*args, **kwargs)
            with self.lock:
                self.finish_calls += 1
                self.finish_seconds += time.perf_counter() - t0
            return got

        claims.claim = claim
        completion.finish = finish

        def detach() -> None:
            claims.claim = real_claim
            completion.finish = real_finish
            engine.dialect.do_ping = real_ping  # type: ignore[method-assign]
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            event.remove(engine, "commit", on_commit)
            event.remove(engine, "rollback", on_rollback)

        return detach

    def summary(self, jobs_run: int) -> list[str]:
        n = max(1, jobs_run)
        total = sum(self.statements.values())
        lines = [
            f"statements: {total} ({total / n:.2f}/job), commits {self.commits} "
            f"({self.commits / n:.2f}/job), rollbacks {self.rollbacks}",
            f"claim(): {self.claim_calls} calls ({self.claim_calls / n:.2f}/job), "
            f"{self.empty_claims} empty; mean "
            f"{1000 * self.claim_seconds / max(1, self.claim_calls):.3f} ms",
            f"finish(): {self.finish_calls} calls; mean "
            f"{1000 * self.finish_seconds / max(1, self.finish_calls):.3f} ms",
            f"pool.wake(): {self.wakes} ({self.wakes / n:.2f}/job)",
        ]
        if self.postgres:
            # psycopg sends BEGIN as a round trip of its own before a transaction's first
            # statement (not in autocommit); the pool's liveness pings are one each.
            ends = self.commits + self.rollbacks
            trips = total + ends + ends + self.pings
            lines.insert(
                1,
                f"round trips: {trips} ({trips / n:.2f}/job) = statements + BEGIN "
                f"{ends} + COMMIT/ROLLBACK {ends} + pings {self.pings} ({self.pings / n:.2f}/job)",
            )
        for key, count in self.statements.most_common():
            mean = 1000 * self.statement_seconds[key] / count
            lines.append(f"    {count:>8}  {count / n:6.2f}/job  {mean:7.3f} ms each  {key}")
        return lines


def _sends_transaction(conn: Any) -> bool:
    """Whether a transaction's end on ``conn`` reached the database: not the harness's
    poll, not a statement run in autocommit (its own transaction: no BEGIN, no COMMIT)."""
    if conn.get_execution_options().get("bench_poll"):
        return False
    return getattr(conn.connection.dbapi_connection, "autocommit", False) is not True


class BenchPool(WorkerPool):
    """The real WorkerPool; counts wake-ups and optionally profiles its threads."""

    def __init__(self, *args: Any, stats: Stats | None, profile: bool, **kwargs: Any) -> None:
        self.bench_stats = stats
        self.profiles: list[cProfile.Profile] = []
        self._profile_threads = profile
        super().__init__(*args, **kwargs)

    def wake(self, count: int | None = None) -> None:
        if self.bench_stats is not None:
            with self.bench_stats.lock:
                self.bench_stats.wakes += 1
        super().wake(count)

    def _spawn(self, target: Any, name: str) -> None:
        if not self._profile_threads:
            super()._spawn(target, name)
            return
        profiler = cProfile.Profile()
        self.profiles.append(profiler)

        def run() -> None:
            profiler.enable()
            try:
                target()
            finally:
                profiler.disable()

        super()._spawn(run, name)


# -- harness -----------------------------------------------------------------------------


@dataclass
class Options:
    workers: int
    poll_seconds: float
    sql_stats: bool
    profile_dir: Path | None
    timeout: float


class Harness:
    """A Runtime (Database + schema) and a WorkerPool on a fresh database."""

    def __init__(self, url: str, opts: Options, name: str) -> None:
        self.opts = opts
        self.name = name
        settings = Settings(database_url=url, workers=opts.workers)
        self.runtime = Runtime.create(settings)
        self.db = self.runtime.db
        self.stats = Stats() if opts.sql_stats else None
        self._detach: Callable[[], None] | None = None
        self.pool: BenchPool | None = None
        self._settings = settings

    def instrument(self) -> None:
        if self.stats is not None and self._detach is None:
            self._detach = self.stats.attach(self.db)

    def start_pool(self) -> None:
        self.pool = BenchPool(
            self.db,
            self.runtime.registry,
            self._settings,
            stats=self.stats,
            profile=self.opts.profile_dir is not None,
        )
        self.pool.start()

    def unfinished(self, root_id: int | None = None) -> bool:
        """Whether any job is still waiting or running: an indexed LIMIT 1, not a count,
        so polling every few ms costs the workers next to nothing."""
        query = select(jobs.c.id).where(jobs.c.status.in_(NOT_DONE)).limit(1)
        if root_id is not None:
            query = query.where(jobs.c.root_id == root_id)
        with self.db.engine.connect() as conn:
            conn = conn.execution_options(bench_poll=True)
            with conn.begin():
                return conn.execute(query).first() is not None

    def last_id(self, root_id: int) -> int:
        with self.db.read() as conn:
            query = select(func.max(jobs.c.id)).where(jobs.c.root_id == root_id)
            return int(conn.execute(query).scalar_one())

    def leaf_done(self, job_id: int) -> bool:
        query = select(jobs.c.status).where(jobs.c.id == job_id)
        with self.db.engine.connect() as conn:
            conn = conn.execution_options(bench_poll=True)
            with conn.begin():
                return conn.execute(query).scalar_one() not in NOT_DONE

    def wait_done(self, root_id: int | None = None, last_id: int | None = None) -> float:
        """Poll until no job is waiting or running; returns perf_counter at detection.

        With ``last_id`` (a chain's last job) the poll is one primary-key lookup; the
        whole tree is checked once that job has ended.
        """
        deadline = time.perf_counter() + self.opts.timeout
        while True:
            if (last_id is None or self.leaf_done(last_id)) and not self.unfinished(root_id):
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.name}: jobs still not done after {self.opts.timeout} s")
            time.sleep(self.opts.poll_seconds)

    def rows(self, root_id: int | None = None) -> list[Any]:
        query = select(
            jobs.c.id,
            jobs.c.parent_id,
            jobs.c.depth,
            jobs.c.status,
            jobs.c.claimed_at,
            jobs.c.started_at,
            jobs.c.finished_at,
            jobs.c.job_type,
        ).order_by(jobs.c.depth, jobs.c.id)
        if root_id is not None:
            query = query.where(jobs.c.root_id == root_id)
        with self.db.read() as conn:
            return list(conn.execute(query).all())

    def close(self, report: Report) -> None:
        if self.pool is not None:
            self.pool.stop(grace_seconds=10.0)
        if self._detach is not None:
            self._detach()
        if self.pool is not None and self.pool.profiles and self.opts.profile_dir is not None:
            dump_profiles(self.pool.profiles, self.opts.profile_dir / f"{self.name}-workers.prof")
        self.db.dispose()


def dump_profiles(profiles: list[cProfile.Profile], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = pstats.Stats(profiles[0])
    for other in profiles[1:]:
        stats.add(other)
    stats.dump_stats(str(path))


def print_profile(path: Path, top: int = 25) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        text_out = out.getvalue()
        start = text_out.find("   ncalls")
        print(f"\n--- {path.name}: top {top} by {order} ---")
        print(text_out[start:] if start >= 0 else text_out)


def check_all_finished(rows: list[Any], scenario: str, report: Report) -> None:
    statuses = Counter(r.status for r in rows)
    if set(statuses) != {Status.FINISHED.value}:
        report.notes.append(f"{scenario}: not all jobs FINISHED: {dict(statuses)}")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- payloads ----------------------------------------------------------------------------


def noop_spec(children: list[JobSpec] | None = None) -> JobSpec:
    return JobSpec(target_object="NOOP", job_type="NOOP", target_id=None, next_jobs=children or [])


def chain_spec(depth: int) -> JobSpec:
    """A chain as a nested JobSpec, built iteratively (see the note on parse_tree)."""
    node = noop_spec()
    for _ in range(depth - 1):
        node = noop_spec([node])
    return node


def chain_body(depth: int) -> dict[str, Any]:
    """A chain of ``depth`` NOOPs as one nested payload, built from the leaf up."""
    node: dict[str, Any] = {"targetObject": f"{depth}.NOOP"}
    for level in range(depth - 1, 0, -1):
        node = {"targetObject": f"{level}.NOOP", "nextJobs": [node]}
    return node


def wide_body(nodes: int) -> dict[str, Any]:
    """One root with nodes-1 children."""
    return {
        "targetObject": "NOOP",
        "nextJobs": [
            {"targetObject": f"{i}.NOOP", "parameters": {"i": i}} for i in range(nodes - 1)
        ],
    }


def tree_body(nodes: int) -> dict[str, Any]:
    """Three levels: root, ~sqrt(n) children, the rest spread as grandchildren."""
    mid = max(1, int((nodes - 1) ** 0.5))
    leaves = nodes - 1 - mid
    children = []
    for i in range(mid):
        share = leaves // mid + (1 if i < leaves % mid else 0)
        children.append(
            {
                "targetObject": f"{i}.NOOP",
                "parameters": {"i": i},
                "nextJobs": [
                    {"targetObject": f"{i}-{j}.NOOP", "parameters": {"j": j}} for j in range(share)
                ],
            }
        )
    return {"targetObject": "NOOP", "nextJobs": children}


# -- scenarios ---------------------------------------------------------------------------


def run_throughput(backend: Backend, opts: Options, n: int, report: Report) -> None:
    label = f"1 throughput ({n:,} NOOP)"
    with backend.fresh("throughput") as url:
        h = Harness(url, opts, "throughput")
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                submission.submit(h.db, noop_spec())
            submit_s = time.perf_counter() - t0
            h.instrument()
            start, cpu0 = time.perf_counter(), time.process_time()
            h.start_pool()
            done = h.wait_done()
            cpu = time.process_time() - cpu0
            rows = h.rows()
        finally:
            h.close(report)
    check_all_finished(rows, "throughput", report)
    first_claim = min(r.claimed_at for r in rows)
    last_finish = max(r.finished_at for r in rows)
    span = last_finish - first_claim
    report.add(label, "submit (1 txn per job, no workers)", f"{n / submit_s:,.0f} jobs/s")
    report.add(label, "first claim -> last finish", f"{span:.3f} s")
    report.add(label, "throughput (DB times)", f"{n / span:,.0f} jobs/s", ">= 2,000 jobs/s")
    report.add(label, "wall (pool start -> all done seen)", f"{done - start:.3f} s")
    # Does the rate hold up as the table (and the process) fills? First vs last tenth.
    ends = sorted(r.finished_at for r in rows)
    tenth = max(2, n // 10)
    first = (tenth - 1) / max(1e-9, ends[tenth - 1] - ends[0])
    last = (tenth - 1) / max(1e-9, ends[-1] - ends[-tenth])
    report.add(label, f"rate over first / last {tenth:,} finishes", f"{first:,.0f} / {last:,.0f}")
    report.add(label, "process CPU per job (all threads)", ms(cpu / n))
    if h.stats is not None:
        report.notes.append("throughput SQL/claim stats:\n  " + "\n  ".join(h.stats.summary(n)))


def run_chain(backend: Backend, opts: Options, depth: int, report: Report) -> None:
    label = f"2 chain (depth {depth:,})"
    with backend.fresh("chain") as url:
        h = Harness(url, opts, "chain")
        try:
            spec, parse_s = chain_payload(depth, h.runtime.registry, report)
            h.instrument()
            h.start_pool()
            t0, cpu0 = time.perf_counter(), time.process_time()
            root_id = submission.submit(h.db, spec)
            t1 = time.perf_counter()
            done = h.wait_done(root_id, last_id=h.last_id(root_id))
            cpu = time.process_time() - cpu0
            rows = h.rows(root_id)
        finally:
            h.close(report)
    check_all_finished(rows, "chain", report)
    by_id = {r.id: r for r in rows}
    hops = [r.started_at - by_id[r.parent_id].finished_at for r in rows if r.parent_id is not None]
    total = max(r.finished_at for r in rows) - min(r.started_at for r in rows)
    report.add(label, "hop parent end -> child start, median", ms(statistics.median(hops)))
    report.add(label, "hop p99", ms(pct(hops, 99)))
    report.add(label, "hop max", ms(max(hops)))
    # The hop is the engine's cost per step: the parent's function returned -> its end
    # recorded and the child claimed (one commit) -> the child's function started. A whole
    # link (run the parent, commit, start the child) adds the run.
    links = [r.started_at - by_id[r.parent_id].started_at for r in rows if r.parent_id is not None]
    report.add(label, "link parent start -> child start, median", ms(statistics.median(links)))
    report.add(label, "link p99", ms(pct(links, 99)))
    run_times = [r.finished_at - r.started_at for r in rows]
    report.add(label, "job run (start -> end), median", ms(statistics.median(run_times)))
    report.add(label, "root start -> last end (DB)", f"{total:.3f} s")
    report.add(label, "wall (submit -> all done seen)", f"{done - t0:.3f} s")
    if parse_s is not None:
        report.add(label, "parse_tree of the nested payload", ms(parse_s))
    report.add(label, "submission.submit", ms(t1 - t0))
    report.add(label, "process CPU per job (all threads)", ms(cpu / depth))
    if h.stats is not None:
        report.notes.append("chain SQL/claim stats:\n  " + "\n  ".join(h.stats.summary(depth)))


def run_fanout(backend: Backend, opts: Options, width: int, report: Report) -> None:
    label = f"3 fan-out (1 -> {width:,})"
    with backend.fresh("fanout") as url:
        h = Harness(url, opts, "fanout")
        try:
            spec = noop_spec([noop_spec() for _ in range(width)])
            h.instrument()
            h.start_pool()
            t0, cpu0 = time.perf_counter(), time.process_time()
            root_id = submission.submit(h.db, spec)
            done = h.wait_done(root_id)
            cpu = time.process_time() - cpu0
            rows = h.rows(root_id)
        finally:
            h.close(report)
    check_all_finished(rows, "fanout", report)
    root = next(r for r in rows if r.parent_id is None)
    children = [r for r in rows if r.parent_id is not None]
    root_end = root.finished_at
    report.add(
        label, "root end -> first child start", ms(min(c.started_at for c in children) - root_end)
    )
    report.add(
        label, "root end -> last child start", ms(max(c.started_at for c in children) - root_end)
    )
    last_end = max(c.finished_at for c in children) - root_end
    report.add(label, "root end -> last child end", ms(last_end))
    report.add(label, "children/s (root end -> last end)", f"{width / last_end:,.0f} jobs/s")
    report.add(label, "wall (submit -> all done seen)", f"{done - t0:.3f} s")
    report.add(label, "process CPU per job (all threads)", ms(cpu / (width + 1)))
    if h.stats is not None:
        report.notes.append(
            "fan-out SQL/claim stats:\n  " + "\n  ".join(h.stats.summary(width + 1))
        )


def fan_in_spec(width: int) -> JobSpec:
    """1 -> width parents -> one JOIN (a node under each parent) -> B."""
    tail = noop_spec()
    branches = []
    for index in range(width):
        join = JobSpec(
            target_object="bench.JOIN",
            job_type="JOIN",
            target_id="bench",
            next_jobs=[tail] if index == width - 1 else [],
        )
        branches.append(noop_spec([join]))
    return noop_spec(branches)


def run_fanin(backend: Backend, opts: Options, width: int, report: Report) -> None:
    label = f"5 fan-in (1 -> {width:,} -> join -> 1)"
    with backend.fresh("fanin") as url:
        h = Harness(url, opts, "fanin")
        try:
            spec = fan_in_spec(width)
            h.instrument()
            h.start_pool()
            t0 = time.perf_counter()
            root_id = submission.submit(h.db, spec)
            done = h.wait_done(root_id)
            rows = h.rows(root_id)
        finally:
            h.close(report)
    check_all_finished(rows, "fanin", report)
    by_id = {r.id: r for r in rows}
    parents = [r for r in rows if r.parent_id == root_id]
    joins = [r for r in rows if r.job_type == "JOIN"]
    [b] = [r for r in rows if r.parent_id is not None and by_id[r.parent_id].job_type == "JOIN"]
    last_parent_end = max(p.finished_at for p in parents)
    last_arrival = max(j.finished_at for j in joins)
    report.add(label, "last parent end -> B start", ms(b.started_at - last_parent_end))
    report.add(label, "last arrival recorded -> B start", ms(b.started_at - last_arrival))
    report.add(label, "B started (exactly once)", str(sum(1 for r in rows if r.id == b.id)))
    report.add(label, "wall (submit -> all done seen)", f"{done - t0:.3f} s")


def accept_shapes(nodes: int) -> list[tuple[str, dict[str, Any]]]:
    """The payloads accepted: two shapes of ``nodes`` jobs, a 1,000-deep chain and a chain
    ``nodes`` deep (the default max_depth = max_nodes = 10,000)."""
    deep = min(1_000, nodes)
    return [
        (f"wide 1+{nodes - 1}", wide_body(nodes)),
        ("3-level", tree_body(nodes)),
        (f"chain {deep:,} deep", chain_body(deep)),
        (f"chain {nodes:,} deep", chain_body(nodes)),
    ]


def run_accept(backend: Backend, opts: Options, nodes: int, repeat: int, report: Report) -> None:
    limits = Limits()  # the product defaults: max_depth 10,000, max_nodes 10,000
    with backend.fresh("accept") as url:
        h = Harness(url, opts, "accept")
        try:
            registry = h.runtime.registry
            h.instrument()
            profiler = cProfile.Profile() if opts.profile_dir is not None else None
            for shape, payload in accept_shapes(nodes):
                raw = jsontext.dumps(payload)
                size = sum(1 for _ in parse_tree(payload, limits, lambda name: True).walk())
                decode, parse, store = [], [], []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    body = jsontext.loads(raw)  # as the API decodes: at any depth
                    t1 = time.perf_counter()
                    if profiler is not None:
                        profiler.enable()
                    spec = parse_tree(body, limits, lambda name: name in registry)
                    t2 = time.perf_counter()
                    submission.submit(h.db, spec)
                    t3 = time.perf_counter()
                    if profiler is not None:
                        profiler.disable()
                    decode.append(t1 - t0)
                    parse.append(t2 - t1)
                    store.append(t3 - t2)
                label = f"4 accept {size:,} ({shape})"
                best = min(range(repeat), key=lambda i: parse[i] + store[i])
                med_parse, med_store = statistics.median(parse), statistics.median(store)
                report.add(
                    label,
                    f"jsontext.loads ({len(raw) / 1e6:.2f} MB)",
                    ms(statistics.median(decode)),
                )
                report.add(label, "parse_tree (validation)", ms(med_parse))
                report.add(label, "submission.submit (1 txn)", ms(med_store))
                report.add(
                    label,
                    f"parse + submit (median of {repeat})",
                    ms(med_parse + med_store),
                    "< 1 s",
                )
                if repeat > 1:
                    report.add(label, "parse + submit (best)", ms(parse[best] + store[best]))
            if profiler is not None and opts.profile_dir is not None:
                opts.profile_dir.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(str(opts.profile_dir / "accept-main.prof"))
            accept_over_http(url, opts, nodes, repeat, report)
            if h.stats is not None:
                per = 2 * repeat * nodes
                report.notes.append("accept SQL stats:\n  " + "\n  ".join(h.stats.summary(per)))
        finally:
            h.close(report)


def accept_over_http(url: str, opts: Options, nodes: int, repeat: int, report: Report) -> None:
    """POST /api/v1/jobs -> 201 over real HTTP (waitress on loopback, the product's app):
    body upload, decoding, validation, storing and the answer, as a client sees it."""
    import requests
    from waitress import create_server

    from app.web import create_app

    token = "bench-token"
    settings = Settings(database_url=url, workers=opts.workers, api_tokens=(f"admin:{token}",))
    runtime = Runtime.create(settings)
    server: Any = create_server(create_app(runtime=runtime), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}/api/v1/jobs"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with requests.Session() as http:
            for shape, payload in accept_shapes(nodes):
                raw = jsontext.dumps(payload).encode()
                took = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    answer = http.post(base, data=raw, headers=headers, timeout=opts.timeout)
                    took.append(time.perf_counter() - t0)
                    if answer.status_code != 201:
                        report.notes.append(f"accept over HTTP, {shape}: {answer.text[:300]}")
                        break
                else:
                    report.add(
                        f"4 accept over HTTP ({shape})",
                        f"POST /jobs -> 201 ({len(raw) / 1e6:.2f} MB, median of {repeat})",
                        ms(statistics.median(took)),
                        "< 1 s",
                    )
    finally:
        server.close()
        thread.join(timeout=5)
        runtime.db.dispose()


def chain_payload(depth: int, registry: Any, report: Report) -> tuple[JobSpec, float | None]:
    """The chain as one nested payload through parse_tree (limits raised to fit it, for
    chains deeper than the default max_depth of 10,000). Should parse_tree fail on such
    depth (it once recursed per level), the JobSpec is built directly and a note says why.
    """
    node: dict[str, Any] = {"targetObject": "NOOP"}
    for _ in range(depth - 1):
        node = {"targetObject": "NOOP", "nextJobs": [node]}
    limits = Limits(max_depth=depth, max_nodes=max(depth, Limits().max_nodes))
    t0 = time.perf_counter()
    try:
        spec = parse_tree(node, limits, lambda name: name in registry)
    except (RecursionError, PayloadError) as exc:
        report.notes.append(
            f"chain: parse_tree rejected a {depth}-deep chain with Limits(max_depth={depth}) "
            f"({type(exc).__name__}: {str(exc)[:120]}); the JobSpec was built directly."
        )
        return chain_spec(depth), None
    return spec, time.perf_counter() - t0


# -- main --------------------------------------------------------------------------------


def machine(backend: Backend, opts: Options) -> list[str]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 0
    return [
        f"machine: nproc={affinity} (cpu_count={os.cpu_count()}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}, "
        f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms",
        f"code: {code_version()}",
        f"load average at start: {load_average()} (other processes share these cores)",
        f"database: {backend.describe()}",
        f"settings: workers={opts.workers}, other settings product defaults "
        f"(idle_poll_seconds={Settings().idle_poll_seconds:g}, "
        f"lease_seconds={Settings().lease_seconds:g}); completion polled every "
        f"{opts.poll_seconds * 1000:g} ms",
    ]


def code_version() -> str:
    """The commit measured (and whether the tree had uncommitted changes), if in git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not available
        return "n/a"


def print_report(report: Report) -> None:
    headers = ("scenario", "metric", "value", "target")
    cols = list(zip(*[(r.scenario, r.metric, r.value, r.target) for r in report.rows], strict=True))
    widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(headers, cols, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    previous = None
    for r in report.rows:
        scenario = r.scenario if r.scenario != previous else ""
        previous = r.scenario
        cells = (scenario, r.metric, r.value.rjust(widths[2]), r.target)
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    for note in report.notes:
        print(f"\nnote: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--workers", type=int, default=Settings().workers)
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server URL (its database is only used to create/drop temp databases); "
        "default: a SQLite file in a temp directory",
    )
    parser.add_argument(
        "--only",
        default="throughput,chain,fanout,accept,fanin",
        help="comma-separated subset of throughput,chain,fanout,accept,fanin",
    )
    parser.add_argument("--poll-ms", type=float, default=5.0, help="completion poll interval")
    parser.add_argument("--sql-stats", action="store_true", help="count statements/claims/wakes")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile worker threads")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-scenario limit (s)")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {"throughput", "chain", "fanout", "accept", "fanin"}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    opts = Options(
        workers=args.workers,
        poll_seconds=args.poll_ms / 1000,
        sql_stats=args.sql_stats,
        profile_dir=args.profile,
        timeout=args.timeout,
    )
    backend = Backend(args.database_url)
    report = Report()
    try:
        print("jobchain benchmark" + (" (--quick)" if args.quick else ""))
        for line in machine(backend, opts):
            print(f"  {line}")
        print(flush=True)
        if "throughput" in only:
            run_throughput(backend, opts, sizes.throughput, report)
        if "chain" in only:
            run_chain(backend, opts, sizes.chain, report)
        if "fanout" in only:
            run_fanout(backend, opts, sizes.fanout, report)
        if "accept" in only:
            run_accept(backend, opts, sizes.accept, sizes.accept_repeat, report)
        if "fanin" in only:
            run_fanin(backend, opts, sizes.fanin, report)
    finally:
        backend.close()
    print_report(report)
    print(f"\nload average at end: {load_average()}")
    if args.profile is not None:
        for path in sorted(args.profile.glob("*.prof")):
            print_profile(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
