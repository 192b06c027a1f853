"""The five scenarios of the battery. Each builds its own cluster, injects its faults, waits
for the work to drain and ends with :func:`tests.reliability.invariants.check`.

Every scenario takes a frozen config whose defaults are the long form; ``SHORT`` holds the
scaled-down forms ``make test`` runs.
"""

from __future__ import annotations

import logging
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.failpoints import ENV as FAILPOINTS_ENV
from app.failpoints import EXIT_CODE as FAILPOINT_EXIT
from tests.helpers import wait_until
from tests.reliability import workload
from tests.reliability.api import Submitter
from tests.reliability.cluster import (
    DEFAULT_POSTGRES,
    POLL,
    WORKER_READY,
    Cluster,
    Proc,
    admin_connection,
)
from tests.reliability.invariants import Report, check, read_journal
from tests.reliability.probe import Probe

log = logging.getLogger("jobchain.reliability")

POINTS = ("after_claim", "mid_job", "before_finish_commit", "after_finish_commit", "mid_join")
PG_RESTART = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"]


@dataclass
class Result:
    scenario: str
    database: str
    jobs: int
    faults: str
    report: Report
    seconds: float
    workdir: Path

    @property
    def passed(self) -> bool:
        return self.report.ok


@dataclass
class Run:
    """What a scenario accumulates while it runs, turned into a :class:`Result` at the end."""

    name: str
    cluster: Cluster
    submitter: Submitter
    faults: str = ""
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    result: Result | None = None

    def note(self, what: str) -> None:
        log.info("%s/%s +%.1f s: %s", self.name, self.cluster.database, self.elapsed(), what)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def probe(self) -> Probe:
        """A new probe of the scenario's database (close it)."""
        return Probe(self.cluster.url)

    def expected_jobs(self) -> int:
        return sum(item.submission.jobs for item in self.submitter.accepted)

    def drain(self, timeout: float) -> None:
        """Wait until every accepted job is terminal."""
        self.note(f"{self.faults}; waiting for {self.expected_jobs()} jobs to end")
        probe = self.probe()
        try:
            wait_until(
                lambda: probe.drained(self.expected_jobs()), timeout, POLL, "the work to drain"
            )
            self.note("drained")
        except AssertionError as exc:
            self.problems.append(f"{exc}: {probe.unfinished()} job(s) unfinished")
        finally:
            probe.close()

    def expect_alive(self, procs: list[Proc]) -> None:
        for proc in procs:
            if not proc.alive():
                self.problems.append(
                    f"{proc.name} exited {proc.popen.returncode} unasked:\n{proc.tail(15)}"
                )

    def finish(self, **options: Any) -> Result:
        """Stop every process, then check the invariants."""
        self.note("stopping processes")
        self.submitter.close()
        alive = [proc for proc in self.cluster.procs if proc.alive()]
        for proc in alive:
            proc.terminate()
        for proc in alive:
            code = proc.wait()
            if code != 0:
                self.problems.append(f"{proc.name} stopped with {code}:\n{proc.tail(15)}")
        self.note("stopped")
        report = check(
            self.cluster.url,
            self.submitter.accepted,
            journal=self.cluster.journal,
            api=self.submitter.log,
            **options,
        )
        for problem in self.problems:
            report.add("process", problem)
        self.note(f"checked: {'PASS' if report.ok else 'FAIL'}")
        (self.cluster.workdir / "report.txt").write_text(report.describe(limit=1000) + "\n")
        self.result = Result(
            self.name,
            self.cluster.database,
            report.jobs,
            self.faults,
            report,
            self.elapsed(),
            self.cluster.workdir,
        )
        return self.result


@contextmanager
def running(
    name: str, database: str, postgres_url: str, settings: dict[str, str] | None = None
) -> Iterator[Run]:
    """A cluster with an API node; its work directory (logs, journal, SQLite file) is kept
    only when the scenario failed."""
    cluster = Cluster(database, postgres_url, settings=settings or {})
    with cluster:
        _, base = cluster.start_api()
        run = Run(name, cluster, Submitter(base))
        run.note("database and API node ready")
        yield run
    if run.result is not None and run.result.passed:
        cluster.cleanup()


def _background(fn: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def _result_of(future: Future[Any], run: Run, what: str, timeout: float) -> None:
    try:
        future.result(timeout)
    except Exception as exc:
        run.problems.append(f"{what} failed: {type(exc).__name__}: {exc}")


# -- 1. kill soak ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KillSoak:
    database: str = "postgresql"
    jobs: int = 10_000
    workers: int = 4
    threads: int = 2
    kills: int = 100
    gap: tuple[float, float] = (2.0, 5.0)
    ms: float = 100
    seed: int = 1
    drain_timeout: float = 300


def kill_soak(config: KillSoak, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """Random ``kill -9`` of worker processes (each restarted at once) while work streams in."""
    rng = random.Random(config.seed)
    work = workload.mix(config.jobs, rng, config.ms)
    with running("kill soak", config.database, postgres_url) as run:
        workers = run.cluster.start_workers(config.workers, config.threads)
        run.note("workers ready")
        period = config.kills * sum(config.gap) / 2
        submitting = _background(lambda: run.submitter.submit_all(work, seconds=period))
        probe = run.probe()
        busy_kills = 0
        for _ in range(config.kills):
            time.sleep(rng.uniform(*config.gap))  # the kill schedule itself, not a wait
            # A random worker among those holding jobs (any, when none does).
            held = [probe.held_by(proc.pid) for proc in workers]
            index = rng.choice([i for i, n in enumerate(held) if n] or range(len(workers)))
            busy_kills += held[index] > 0
            workers[index].kill()
            workers[index] = run.cluster.start_worker(config.threads, ready=False)
        probe.close()
        for proc in workers:
            proc.wait_for(WORKER_READY)  # every restarted worker came up
        _result_of(submitting, run, "submitting", config.drain_timeout)
        run.faults = f"{config.kills} kill -9 ({busy_kills} holding jobs)"
        run.drain(config.drain_timeout)
        run.expect_alive(workers)
        return run.finish()


# -- 2. crash points ------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPoints:
    database: str = "postgresql"
    repetitions: int = 50  # per point
    points: tuple[str, ...] = POINTS
    backlog: int = 60  # unfinished jobs the feeder keeps available
    ms: float = 5
    seed: int = 2
    crash_timeout: float = 120  # for one worker to reach its point
    drain_timeout: float = 120


def crash_points(config: CrashPoints, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """One lane per failpoint: a worker that exits at that point, restarted until it has
    crashed there ``repetitions`` times, while a feeder keeps work available. The lanes'
    workers run everything else normally (and reap each other's expired leases); a healthy
    worker then drains what is left."""
    rng = random.Random(config.seed)
    with running("crash points", config.database, postgres_url) as run:
        done = threading.Event()
        feeding = _background(lambda: _feed(run, config, done))
        crashes: dict[str, int] = dict.fromkeys(config.points, 0)

        def lane(point: str) -> None:
            for _ in range(config.repetitions):
                nth = rng.randint(1, 3)  # exit the 1st, 2nd or 3rd time the point is reached
                proc = run.cluster.start_worker(
                    threads=1, ready=False, **{FAILPOINTS_ENV: f"{point}:{nth}"}
                )
                try:
                    code = proc.popen.wait(config.crash_timeout)
                except subprocess.TimeoutExpired:
                    run.problems.append(f"{point}: not reached in {config.crash_timeout:g} s")
                    return
                if code != FAILPOINT_EXIT or f"failpoint {point}:" not in proc.output():
                    run.problems.append(f"{point}: {proc.name} exited {code}:\n{proc.tail(15)}")
                    return
                crashes[point] += 1
                run.note(f"{proc.name} exited at {point}:{nth}")

        with ThreadPoolExecutor(len(config.points)) as lanes:
            list(lanes.map(lane, config.points))
        done.set()
        _result_of(feeding, run, "feeding", 60)
        run.faults = f"{sum(crashes.values())} exits: " + ", ".join(
            f"{point} {count}" for point, count in crashes.items()
        )
        healthy = run.cluster.start_worker(threads=2)
        run.drain(config.drain_timeout)
        run.expect_alive([healthy])
        return run.finish()


def _feed(run: Run, config: CrashPoints, done: threading.Event) -> None:
    """Keep ``backlog`` unfinished jobs in the database: chains of 3 and joins of 3."""
    probe = run.probe()
    count = 0
    try:
        while not done.wait(0.05):
            if (probe.unfinished() or 0) >= config.backlog:
                continue
            count += 1
            label = f"f{count}"
            shape = (
                workload.chain(label, 3, config.ms)
                if count % 2
                else workload.join(label, 3, config.ms)
            )
            run.submitter.submit(shape)
    finally:
        probe.close()


# -- 3. double claim ------------------------------------------------------------------------


@dataclass(frozen=True)
class DoubleClaim:
    database: str = "postgresql"
    processes: int = 16
    threads: int = 2
    jobs: int = 5000
    fanout: int = 500  # jobs released together by one root
    ms: float = 1
    drain_timeout: float = 300


def double_claim(config: DoubleClaim, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """Many processes race for wide fan-outs; with long leases and no crash every job must run
    exactly once, in one process."""
    # Nothing crashes here, so no lease may expire: any second run is a double claim.
    settings = {"JOBCHAIN_LEASE_SECONDS": "60", "JOBCHAIN_IDLE_POLL_SECONDS": "0.2"}
    with running("double claim", config.database, postgres_url, settings) as run:
        workers = run.cluster.start_workers(config.processes, config.threads)
        trees = max(1, config.jobs // config.fanout)
        work = [workload.wide(f"w{i}", config.fanout - 1, config.ms) for i in range(trees)]
        run.submitter.submit_all(work)
        run.faults = f"{config.processes} processes x {config.threads} threads"
        run.drain(config.drain_timeout)
        run.expect_alive(workers)
        return run.finish(runs_once=True)


# -- 4. stale lease -------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleLease:
    database: str = "postgresql"
    rounds: int = 5
    ms: float = 1500  # the job the stopped worker holds (sleeps through aborts)
    timeout: float = 60


def stale_lease(config: StaleLease, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """SIGSTOP a worker mid-job past its lease; another worker re-runs the job and its next
    job; SIGCONT: the late finish must change nothing."""
    with running("stale lease", config.database, postgres_url) as run:
        for number in range(config.rounds):
            _stale_round(run, config, f"stale{number}")
        run.faults = f"{config.rounds} SIGSTOP past the lease"
        return run.finish()


def _stale_round(run: Run, config: StaleLease, label: str) -> None:
    cluster = run.cluster
    stopped = cluster.start_worker(threads=1)
    root = run.submitter.submit(workload.slow_then_next(label, config.ms))

    def started_in(pid: int) -> bool:
        return any(r.job_id == root and r.pid == pid for r in read_journal(cluster.journal))

    wait_until(lambda: started_in(stopped.pid), config.timeout, POLL, f"{label} to start")
    _stop_outside_transactions(cluster, stopped)
    rescuer = cluster.start_worker(threads=1)
    probe = run.probe()
    try:
        wait_until(
            lambda: probe.status(f"{label}.next.BATTERY") == "FINISHED",
            config.timeout,
            POLL,
            f"{label}: the rescuer to finish the job and its next job",
        )
        before = probe.snapshot()
        stopped.signal(signal.SIGCONT)

        def late_run_ended() -> bool:
            runs = read_journal(cluster.journal)
            return any(r.job_id == root and r.pid == stopped.pid and r.end for r in runs)

        wait_until(late_run_ended, config.timeout, POLL, f"{label}: the stopped worker's late end")
        code = stopped.stop()  # a clean stop records (or drops) everything it still had
        if code != 0:
            run.problems.append(f"{label}: the resumed worker stopped with {code}")
        if probe.snapshot() != before:
            run.problems.append(f"{label}: the late finish changed the database")
        # Attempt 2 exists only because the reaper found attempt 1's lease expired.
        runs = [r for r in read_journal(cluster.journal) if r.job_id == root]
        if sorted((r.attempt, r.pid) for r in runs) != [(1, stopped.pid), (2, rescuer.pid)]:
            run.problems.append(f"{label}: expected attempt 1 stopped, 2 rescued; runs {runs}")
    finally:
        probe.close()
        rescuer.stop()


def _stop_outside_transactions(cluster: Cluster, proc: Proc, timeout: float = 10.0) -> None:
    """SIGSTOP ``proc`` at a moment it holds no database lock (a stopped transaction would
    block its rescuer, which is not what this scenario is about): stopped, and let go on
    again while it is inside a transaction, until it is stopped outside one."""

    def stopped_outside() -> bool:
        proc.signal(signal.SIGSTOP)
        if not _write_locked(cluster):
            return True
        proc.signal(signal.SIGCONT)  # let it finish the transaction it was in
        return False

    wait_until(stopped_outside, timeout, POLL, f"{proc.name} to be stopped outside a transaction")


def _write_locked(cluster: Cluster) -> bool:
    if cluster.database == "sqlite":
        path = make_url(cluster.url).database
        conn = sqlite3.connect(str(path), timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
        "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
    )
    with admin_connection(cluster.postgres_url) as pg:
        # A statement sent just before the stop shows as 'active' until the server has
        # answered it: only a session that stays busy holds a lock.
        try:
            wait_until(
                lambda: not pg.execute(query, {"db": cluster.pg_database}).scalar(),
                0.5,
                0.02,
                "the stopped worker's session to go idle",
            )
        except AssertionError:
            return True
        return False


# -- 5. database faults ---------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresFaults:
    jobs: int = 3000
    workers: int = 2
    threads: int = 2
    terminations: int = 30
    gap: tuple[float, float] = (2.0, 4.0)
    restart: bool = True  # restart the server once, mid-run (it is shared: long form only)
    ms: float = 10
    seed: int = 5
    drain_timeout: float = 300


def postgres_faults(config: PostgresFaults, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """Terminate every connection of the scenario's database every few seconds (and restart
    the server once): workers and the API node must reconnect and lose nothing."""
    rng = random.Random(config.seed)
    work = workload.mix(config.jobs, rng, config.ms)
    with running("database faults", "postgresql", postgres_url) as run:
        workers = run.cluster.start_workers(config.workers, config.threads)
        period = config.terminations * sum(config.gap) / 2
        submitting = _background(lambda: run.submitter.submit_all(work, seconds=period * 0.8))
        terminated = 0
        restarts = 0
        for number in range(config.terminations):
            time.sleep(rng.uniform(*config.gap))  # the fault schedule itself, not a wait
            if config.restart and number == config.terminations // 2:
                restarts += _restart_postgres(run)
                continue
            try:
                terminated += _terminate_backends(run.cluster)
            except SQLAlchemyError as exc:  # the server may still be starting after a restart
                run.note(f"terminating connections failed: {exc}")
        _result_of(submitting, run, "submitting", config.drain_timeout)
        run.faults = f"{config.terminations - restarts} terminations ({terminated} backends)"
        if restarts:
            run.faults += ", 1 server restart"
        run.drain(config.drain_timeout)
        run.expect_alive(workers)
        return run.finish(allow_busy=True)


def _terminate_backends(cluster: Cluster) -> int:
    query = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :db AND pid <> pg_backend_pid()"
    )
    with admin_connection(cluster.postgres_url) as conn:
        return int(conn.execute(query, {"db": cluster.pg_database}).scalar() or 0)


def _restart_postgres(run: Run) -> int:
    done = subprocess.run(PG_RESTART, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        run.problems.append(f"{' '.join(PG_RESTART)} failed: {done.stderr.strip()}")
        return 0
    return 1


@dataclass(frozen=True)
class SqliteLock:
    hold: float = 30.0  # seconds another process holds the exclusive lock
    jobs: int = 600
    workers: int = 2
    threads: int = 2
    answer_within: float = 10.0  # every request must get an answer this fast
    # JOBCHAIN_* values, e.g. JOBCHAIN_REQUEST_DB_WAIT_SECONDS (default 5 s): how long a
    # request waits for the database before it answers 503.
    settings: tuple[tuple[str, str], ...] = ()
    ms: float = 5
    seed: int = 6
    drain_timeout: float = 120


def sqlite_lock(config: SqliteLock, postgres_url: str = DEFAULT_POSTGRES) -> Result:
    """Another process holds SQLite's write lock for ``hold`` s while clients submit: they must
    get a prompt 503 with Retry-After (never a 500, never a hang), and nothing is lost."""
    rng = random.Random(config.seed)
    work = workload.mix(config.jobs, rng, config.ms)
    settings = dict(config.settings)
    with running("database faults", "sqlite", postgres_url, settings) as run:
        run.submitter.timeout = config.answer_within
        workers = run.cluster.start_workers(config.workers, config.threads)
        period = config.hold + 2  # before, during and after the lock
        submitting = _background(lambda: run.submitter.submit_all(work, seconds=period))
        wait_until(lambda: run.submitter.accepted, 30, POLL, "a first accepted submission")
        holder = _hold_lock(run.cluster, config.hold)
        _result_of(submitting, run, "submitting", config.drain_timeout + config.hold)
        if holder.popen.wait(config.hold + 30) != 0:
            run.problems.append(f"the lock holder failed:\n{holder.tail()}")
        busy = len(run.submitter.log.busy)
        run.faults = f"write lock held {config.hold:g} s ({busy} answers 503 + Retry-After)"
        if not busy:
            run.problems.append(
                f"no 503 while the database was locked for {config.hold:g} s "
                f"(slowest answer {run.submitter.log.slowest:.1f} s)"
            )
        run.drain(config.drain_timeout)
        run.expect_alive(workers)
        return run.finish(allow_busy=True)


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


def _hold_lock(cluster: Cluster, seconds: float) -> Proc:
    path = str(make_url(cluster.url).database)
    command = [sys.executable, "-c", HOLD_LOCK, path, str(seconds)]
    proc = Proc("lock-holder", command, cluster.env(), cluster.workdir)
    cluster.procs.append(proc)
    proc.wait_for("locked", timeout=30)
    return proc


# -- the short forms ------------------------------------------------------------------------

SHORT: dict[str, Any] = {
    "kill_soak": KillSoak(jobs=300, kills=5, gap=(0.7, 1.5), ms=50, drain_timeout=60),
    "crash_points": CrashPoints(repetitions=3, backlog=30, crash_timeout=45, drain_timeout=60),
    "double_claim": DoubleClaim(processes=4, jobs=500, drain_timeout=60),
    "stale_lease": StaleLease(rounds=1, ms=1000, timeout=30),
    "postgres_faults": PostgresFaults(
        jobs=200, terminations=4, gap=(1.0, 1.5), restart=False, drain_timeout=60
    ),
    "sqlite_lock": SqliteLock(
        hold=6.0,
        jobs=120,
        answer_within=4.0,
        settings=(("JOBCHAIN_REQUEST_DB_WAIT_SECONDS", "0.5"),),
        drain_timeout=60,
    ),
}
