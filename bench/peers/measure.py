"""What every system's runner shares: job timing records, worker processes, memory and CPU
sampling, the workload sequence and the statistics.

Standard library only (psycopg is imported lazily where a PostgreSQL database is created): this
module runs in the project's virtualenv (jobchain) and in ``bench/.peers-venv`` (the peers).

How a job is timed, identically on every system: the job's body is
``start = time.time(); end = time.time(); record(key, start, end)``. :func:`record` appends one
line ``key start end slot`` to the file named by ``BENCH_TIMES_FILE`` with a single unbuffered
``os.write`` on an ``O_APPEND`` descriptor (a few microseconds, no fsync, nothing shared with
the system measured). The runner tails that file to see jobs end and computes every figure
from it: hop = child.start - parent.end, join latency = join.start - max(parents' end).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

TIMES_ENV = "BENCH_TIMES_FILE"
# Names the execution slot a job ran in; "{pid}" and "{thread}" are filled in per job.
SLOT_ENV = "BENCH_SLOT"
ROOT = Path(__file__).resolve().parents[2]

# -- inside the jobs ---------------------------------------------------------------------

_fd: int | None = None
_slot_pid: int | None = None
_slot: str = ""


def record(key: str, start: float, end: float) -> None:
    """Append ``key start end slot`` for one job run (called by every system's no-op job)."""
    global _fd, _slot_pid, _slot
    pid = os.getpid()
    if _fd is None:
        _fd = os.open(os.environ[TIMES_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if _slot_pid != pid:
        _slot_pid = pid
        _slot = os.environ.get(SLOT_ENV, "{pid}").replace("{pid}", str(pid))
    slot = _slot
    if "{thread}" in slot:
        slot = slot.replace("{thread}", threading.current_thread().name)
    os.write(_fd, f"{key} {start:.6f} {end:.6f} {slot}\n".encode())


# -- reading the records -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    start: float
    end: float
    slot: str


class Times:
    """Tails the records file; ``runs[key]`` is the first run of each key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, Run] = {}
        self.duplicates: list[str] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        new = []
        for line in lines:
            key, start, end, slot = line.decode().split(" ", 3)
            if key in self.runs:
                self.duplicates.append(key)
                continue
            self.runs[key] = Run(float(start), float(end), slot)
            new.append(key)
        return new

    def wait(
        self,
        keys: Iterable[str],
        timeout: float,
        alive: Callable[[], None] | None = None,
        poll_seconds: float = 0.01,
    ) -> None:
        """Return once every key has a record; ``alive`` raises if the workers died."""
        missing = set(keys) - self.runs.keys()
        deadline = time.monotonic() + timeout
        last_check = 0.0
        while missing:
            missing.difference_update(self.poll())
            if not missing:
                return
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{len(missing)} jobs not run after {timeout:g} s")
            if alive is not None and now - last_check > 1.0:
                alive()
                last_check = now
            time.sleep(poll_seconds)


# -- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = [1000 * s for s in seconds]
    return {
        "n": len(values),
        "median_ms": statistics.median(values),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
        "mean_ms": statistics.fmean(values),
        "min_ms": min(values),
    }


def flat_rate(runs: dict[str, Run], keys: Sequence[str], slots: int) -> dict[str, Any]:
    """jobs/s once every execution slot had started a job, up to the last job's end.

    The workers were started on a full backlog, so the first jobs of a slot overlap other
    slots' start-up; the window opens at the latest "first start" over the slots.
    """
    rows = [runs[k] for k in keys]
    first: dict[str, float] = {}
    for r in rows:
        first[r.slot] = min(first.get(r.slot, r.start), r.start)
    starts_sorted = sorted(first.values())
    window_start = starts_sorted[-1] if len(first) >= slots else starts_sorted[0]
    last_end = max(r.end for r in rows)
    in_window = sum(1 for r in rows if r.start >= window_start)
    naive_start = min(r.start for r in rows)
    per_slot: dict[str, int] = {}
    for r in rows:
        per_slot[r.slot] = per_slot.get(r.slot, 0) + 1
    return {
        "jobs": len(rows),
        "jobs_in_window": in_window,
        "window_seconds": last_end - window_start,
        "jobs_per_s": in_window / max(last_end - window_start, 1e-9),
        "jobs_per_s_all": len(rows) / max(last_end - naive_start, 1e-9),
        "slots_seen": len(first),
        "slot_start_skew_s": starts_sorted[-1] - starts_sorted[0],
        "jobs_per_slot": sorted(per_slot.values(), reverse=True),
        "window": (window_start, last_end),
    }


# -- processes ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def process_tree(roots: Iterable[int]) -> list[int]:
    seen: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.append(pid)
        stack.extend(_children(pid))
    return seen


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/PID/smaps_rollup; (0, 0) if the process is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, pss


_TICK = os.sysconf("SC_CLK_TCK")
_FIRST_SAMPLE = 0.01  # seconds between samples until a session's workers exist


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and of its children it has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / _TICK


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Workers:
    """Worker processes of one system; each in its own session, output to a log file."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Proc] = []
        self.finished: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Proc:
        log = self.logdir / f"{name}-{len(self.finished) + len(self.procs)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs]

    def check_alive(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                tail = p.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{tail}")

    def wait_output(self, proc: Proc, text: str, timeout: float = 60.0) -> str:
        """Wait until the process printed ``text``; returns the line containing it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in proc.log.read_text(errors="replace").splitlines():
                if text in line:
                    return line
            self.check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"{proc.name} did not print {text!r} within {timeout:g} s")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to each main process (a warm shutdown); SIGKILL to its session if late."""
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            # Anything left in the worker's own session (a pool child, a work-horse).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()
        self.finished.extend(self.procs)
        self.procs = []


class Sampler(threading.Thread):
    """Samples the worker process trees: summed RSS/PSS and CPU time, every ``interval`` s."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.25) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.roots = roots
        self.interval = interval
        self.phase = "idle"
        self.peak_pss: dict[str, int] = {}
        self.peak_rss: dict[str, int] = {}
        self.peak_processes: dict[str, int] = {}
        self.cpu: list[tuple[float, float]] = []  # (time.time(), CPU s) of the current session
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new session: sample now
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            # Until a session's workers have appeared, sample often: the flat window may
            # open (every slot ran a job) within one interval of their start, and the CPU
            # at its start is read between samples. A new session cuts the wait short.
            with self._lock:
                waiting = not self.cpu
            self._wake.wait(_FIRST_SAMPLE if waiting else self.interval)
            self._wake.clear()

    def sample(self) -> None:
        roots = self.roots()
        pids = process_tree(roots)
        rss = pss = 0
        for pid in pids:
            r, p = memory_kib(pid)
            rss += r
            pss += p
        cpu = sum(cpu_seconds(pid) for pid in pids)
        with self._lock:
            phase = self.phase
            if pids:
                self.peak_pss[phase] = max(self.peak_pss.get(phase, 0), pss)
                self.peak_rss[phase] = max(self.peak_rss.get(phase, 0), rss)
                self.peak_processes[phase] = max(self.peak_processes.get(phase, 0), len(pids))
                self.cpu.append((time.time(), cpu))

    def set_phase(self, phase: str) -> None:
        self.sample()
        with self._lock:
            self.phase = phase
            if phase.startswith("session"):
                self.cpu = []
                self._wake.set()

    def cpu_between(self, t0: float, t1: float) -> float | None:
        """Worker CPU seconds spent between two wall-clock times (linear between samples)."""
        with self._lock:
            series = list(self.cpu)
        if len(series) < 2 or t0 < series[0][0]:
            return None

        def at(t: float) -> float:
            for (ta, ca), (tb, cb) in itertools.pairwise(series):
                if ta <= t <= tb:
                    return ca + (cb - ca) * (t - ta) / max(tb - ta, 1e-9)
            return series[-1][1]

        return at(min(t1, series[-1][0])) - at(t0)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


# -- databases ---------------------------------------------------------------------------


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """Create a throw-away PostgreSQL database next to the one in ``admin_url`` (libpq URL).

    Returns (name, libpq URL of the new database).
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    base, _, _ = admin_url.rpartition("/")
    return name, f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


# -- the workload sequence ---------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    flat: int
    chain: int
    join_parents: int
    join_rounds: int
    warm_flat: int = 40
    warm_chain: int = 10
    warm_join: int = 10

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        return cls(
            flat=max(50, round(10_000 * scale)),
            chain=max(10, round(1_000 * scale)),
            join_parents=max(5, round(100 * scale)),
            join_rounds=max(3, round(20 * scale)),
        )


@dataclass
class Context:
    """What the orchestrator hands a runner (command-line options of a runner module)."""

    system: str
    scale: float
    redis_url: str
    pg_url: str
    out: Path
    timeout: float
    workdir: Path
    workloads: tuple[str, ...] = ("chain", "join", "flat")
    sizes: Sizes = field(init=False)

    def __post_init__(self) -> None:
        self.sizes = Sizes.scaled(self.scale)


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Runner:
    """One system under the three workloads. Subclasses implement the hooks.

    Sequence: setup; start the workers; warm-up (flat jobs until every slot ran one, a short
    chain, a small join; excluded from all figures); (b) the chain; (c) the join rounds, one
    after the other; stop the workers; (a) enqueue the flat jobs with no worker running; start
    the workers on that backlog; wait for every job; stop; teardown.
    """

    slots = 2  # execution slots (total concurrency), the same for every system
    layout = ""  # how the slots are made (processes x threads), printed in the table header
    chain_how = ""
    join_how = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.times_path = ctx.workdir / "times.log"
        self.times = Times(self.times_path)
        self.workers = Workers(ctx.workdir)
        self.sampler = Sampler(self.workers.pids)
        self.notes: list[str] = []

    # hooks -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Fresh broker/database state."""

    def teardown(self) -> None:
        """Drop what setup created."""

    def start_workers(self) -> None:
        raise NotImplementedError

    def submit_flat(self, keys: list[str]) -> None:
        """Enqueue independent no-op jobs (no worker is running)."""
        raise NotImplementedError

    def submit_chain(self, keys: list[str]) -> None:
        """keys[0] -> keys[1] -> ...: each starts once the previous one ended."""
        raise NotImplementedError

    def submit_join(self, parents: list[str], join: str, tag: str) -> None:
        """``join`` starts once every parent ended."""
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    # helpers -----------------------------------------------------------------------------

    def worker_env(self, slot: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env[TIMES_ENV] = str(self.times_path)
        env[SLOT_ENV] = slot
        env["PYTHONPATH"] = str(ROOT)
        env.pop("PYTHONSTARTUP", None)
        env.update(extra or {})
        return env

    def wait(self, keys: Iterable[str], what: str) -> None:
        self.times.wait(keys, self.ctx.timeout, alive=self.workers.check_alive)

    # the sequence ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        sizes = self.ctx.sizes
        result: dict[str, Any] = {
            "system": self.ctx.system,
            "layout": self.layout,
            "slots": self.slots,
            "chain_how": self.chain_how,
            "join_how": self.join_how,
            "sizes": asdict(sizes),
            "python": platform.python_version(),
            "load_start": os.getloadavg(),
        }
        self.sampler.start()
        try:
            t = time.perf_counter()
            self.setup()
            result["versions"] = self.versions()
            self.sampler.set_phase("session-1")
            self.start_workers()
            result["startup_s"] = time.perf_counter() - t
            self.warm_up()
            if "chain" in self.ctx.workloads:
                log(f"{self.ctx.system}: warm-up done; chain of {sizes.chain}")
                result["chain"] = self.run_chain(sizes.chain)
            if "join" in self.ctx.workloads:
                log(f"{self.ctx.system}: join, {sizes.join_rounds} x {sizes.join_parents} parents")
                result["join"] = self.run_join(sizes.join_parents, sizes.join_rounds)
            self.sampler.set_phase("stopping")
            self.workers.stop()
            if "flat" in self.ctx.workloads:
                log(f"{self.ctx.system}: flat, {sizes.flat} jobs enqueued before workers start")
                result["flat"] = self.run_flat(sizes.flat)
                self.sampler.set_phase("stopping")
                self.workers.stop()
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{self.ctx.system}: FAILED: {result['error']}")
        finally:
            self.sampler.set_phase("stopping")
            self.workers.stop()
            self.sampler.stop()
            try:
                self.teardown()
            except Exception as exc:
                self.notes.append(f"teardown: {type(exc).__name__}: {exc}")
        result["memory"] = {
            "peak_pss_mib": {k: v / 1024 for k, v in self.sampler.peak_pss.items()},
            "peak_rss_mib": {k: v / 1024 for k, v in self.sampler.peak_rss.items()},
            "peak_processes": dict(self.sampler.peak_processes),
        }
        pss = [v for k, v in self.sampler.peak_pss.items() if k in WORKLOAD_PHASES]
        rss = [v for k, v in self.sampler.peak_rss.items() if k in WORKLOAD_PHASES]
        result["memory"]["peak_pss_mib_all"] = max(pss) / 1024 if pss else None
        result["memory"]["peak_rss_mib_all"] = max(rss) / 1024 if rss else None
        result["duplicates"] = len(self.times.duplicates)
        result["notes"] = self.notes
        result["load_end"] = os.getloadavg()
        return result

    def warm_up(self) -> None:
        self.sampler.set_phase("warm-up")
        sizes = self.ctx.sizes
        for attempt in range(10):
            keys = [f"w{attempt}_{i}" for i in range(sizes.warm_flat)]
            self.submit_flat_running(keys)
            self.wait(keys, "warm-up")
            slots = {self.times.runs[k].slot for k in self.times.runs}
            if len(slots) >= self.slots:
                break
        else:
            self.notes.append(f"warm-up: only {len(slots)} of {self.slots} slots ran a job")
        keys = [f"wc{i}" for i in range(sizes.warm_chain)]
        self.submit_chain(keys)
        self.wait(keys, "warm-up chain")
        parents = [f"wp{i}" for i in range(sizes.warm_join)]
        self.submit_join(parents, "wj", "w")
        self.wait([*parents, "wj"], "warm-up join")

    def submit_flat_running(self, keys: list[str]) -> None:
        """Flat jobs while the workers run (warm-up only); the default enqueues as for (a)."""
        self.submit_flat(keys)

    def run_chain(self, depth: int) -> dict[str, Any]:
        self.sampler.set_phase("chain")
        keys = [f"c{i}" for i in range(depth)]
        t = time.perf_counter()
        self.submit_chain(keys)
        submitted = time.perf_counter() - t
        self.wait(keys, "chain")
        runs = self.times.runs
        hops = [runs[b].start - runs[a].end for a, b in itertools.pairwise(keys)]
        links = [runs[b].start - runs[a].start for a, b in itertools.pairwise(keys)]
        return {
            "depth": depth,
            "submit_s": submitted,
            "hop": summary_ms(hops),
            "link": summary_ms(links),
            "first_start_to_last_end_s": runs[keys[-1]].end - runs[keys[0]].start,
        }

    def run_join(self, parents: int, rounds: int) -> dict[str, Any]:
        self.sampler.set_phase("join")
        latencies = []
        spans = []
        for r in range(rounds):
            keys = [f"p{r}_{i}" for i in range(parents)]
            join = f"j{r}"
            self.submit_join(keys, join, str(r))
            self.wait([*keys, join], f"join round {r}")
            runs = self.times.runs
            last_end = max(runs[k].end for k in keys)
            latencies.append(runs[join].start - last_end)
            spans.append(runs[join].start - min(runs[k].start for k in keys))
        return {
            "parents": parents,
            "rounds": rounds,
            "latency": summary_ms(latencies),
            "first_parent_start_to_join_start": summary_ms(spans),
        }

    def run_flat(self, n: int) -> dict[str, Any]:
        self.sampler.set_phase("enqueue")
        keys = [f"f{i}" for i in range(n)]
        t = time.perf_counter()
        self.submit_flat(keys)
        enqueue_s = time.perf_counter() - t
        self.sampler.set_phase("session-2")
        self.sampler.set_phase("flat")
        self.start_workers()
        self.wait(keys, "flat")
        self.sampler.sample()
        stats = flat_rate(self.times.runs, keys, self.slots)
        t0, t1 = stats.pop("window")
        cpu = self.sampler.cpu_between(t0, t1)
        stats["enqueue_s"] = enqueue_s
        stats["worker_cpu_ms_per_job"] = (
            1000 * cpu / stats["jobs_in_window"] if cpu is not None else None
        )
        return stats


WORKLOAD_PHASES = {"warm-up", "chain", "join", "flat"}


def main(runner_class: Callable[[Context], Runner], argv: list[str] | None = None) -> int:
    """Command line of a runner module (started by ``python -m bench.peers``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--pg-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--flat-jobs", type=int, help="override the flat workload's size")
    parser.add_argument("--join-rounds", type=int, help="override the join workload's rounds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--workloads", default="chain,join,flat")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-peers-{args.system}-"))
    ctx = Context(
        system=args.system,
        scale=args.scale,
        redis_url=args.redis_url,
        pg_url=args.pg_url,
        out=args.out,
        timeout=args.timeout,
        workdir=workdir,
        workloads=tuple(w.strip() for w in args.workloads.split(",") if w.strip()),
    )
    if args.flat_jobs:
        ctx.sizes = replace(ctx.sizes, flat=args.flat_jobs)
    if args.join_rounds:
        ctx.sizes = replace(ctx.sizes, join_rounds=args.join_rounds)
    result = runner_class(ctx).run()
    failed = "error" in result
    if failed or args.keep:
        result["workdir"] = str(workdir)  # worker logs are there
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=2))
    sys.stdout.flush()
    sys.stderr.flush()
    # Some clients (Celery's result consumer) complain from finalizers at interpreter exit.
    os._exit(1 if failed else 0)
