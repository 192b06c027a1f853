"""jobchain side by side with Celery, RQ and Procrastinate: ``python -m bench.peers``
(``make bench-peers``).

Installs the peers into ``bench/.peers-venv`` (pinned in ``bench/peers/requirements.txt``)
unless ``--skip-install``, then runs every system in its own subprocess, one after the other,
on this machine: jobchain's runner in this virtualenv, the peers' in theirs. Each runner gives
its system a fresh broker/database, starts its workers, warms up, runs the three workloads and
writes a JSON result; this module prints one table (raw figures and how jobchain compares) and
writes everything to ``artifacts/bench-peers.json``.

Options: ``--systems`` (comma-separated, default all), ``--scale`` (0.05 for a smoke run),
``--skip-install``, ``--redis-url`` (a dedicated DB number, flushed), ``--pg-url`` (a server;
each system gets its own throw-away database), ``--workloads`` and ``--join-rounds`` (for A/B
runs of one change: e.g. ``--systems jobchain-pg --workloads join --join-rounds 100``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.peers.measure import ROOT, Sizes

HERE = Path(__file__).resolve().parent
PEERS_VENV = ROOT / "bench" / ".peers-venv"
REQUIREMENTS = HERE / "requirements.txt"

# system -> (module, runs in the peers' virtualenv)
SYSTEMS: dict[str, tuple[str, bool]] = {
    "jobchain-sqlite": ("jobchain_runner", False),
    "jobchain-pg": ("jobchain_runner", False),
    "celery": ("celery_app", True),
    "rq": ("rq_jobs", True),
    "rq-simple": ("rq_jobs", True),
    "procrastinate": ("procrastinate_app", True),
}
JOBCHAIN = ("jobchain-sqlite", "jobchain-pg")
# RQ's default worker forks a process per job (~15-70 jobs/s here): its flat rate is measured
# over this many jobs so that the run stays within minutes; the rate is per second either way.
RQ_FORK_FLAT_CAP = 1_000


def ensure_peers_venv() -> Path:
    """Create bench/.peers-venv and install the pinned peers when the pins changed."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not python.exists():
        print(f"creating {PEERS_VENV} ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(PEERS_VENV)
    print(f"installing {REQUIREMENTS} into {PEERS_VENV} ...", file=sys.stderr, flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted + "\n")
    return python


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s while a system runs (other users share the cores)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(5.0):
            self.samples.append(os.getloadavg()[0])


def servers(args: argparse.Namespace) -> dict[str, str]:
    """Start time of PostgreSQL and run id of Redis: a change means someone restarted one."""
    out: dict[str, str] = {}
    try:
        import psycopg

        with psycopg.connect(args.pg_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
            out["postgresql"] = str(row[0]) if row else "?"
    except Exception as exc:
        out["postgresql"] = f"unreachable: {type(exc).__name__}"
    try:
        host, _, port = args.redis_url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), 5) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"run_id:" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        out["redis"] = data.split(b"run_id:", 1)[1].split(b"\r\n", 1)[0].decode()
    except Exception as exc:
        out["redis"] = f"unreachable: {type(exc).__name__}"
    return out


def scaled_sizes(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.scaled(args.scale)
    return replace(sizes, join_rounds=args.join_rounds) if args.join_rounds else sizes


def run_system(system: str, args: argparse.Namespace, peers_python: Path) -> dict[str, Any]:
    module, in_peers = SYSTEMS[system]
    python = str(peers_python) if in_peers else sys.executable
    sizes = scaled_sizes(args)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    command = [
        python,
        "-c",
        f"import sys; from bench.peers.measure import main; "
        f"from bench.peers.{module} import RUNNER; sys.exit(main(RUNNER))",
        "--system",
        system,
        "--scale",
        str(args.scale),
        "--redis-url",
        args.redis_url,
        "--pg-url",
        args.pg_url,
        "--out",
        str(out),
        "--timeout",
        str(args.timeout),
    ]
    if system == "rq" and sizes.flat > RQ_FORK_FLAT_CAP:
        command += ["--flat-jobs", str(RQ_FORK_FLAT_CAP)]
    if args.keep:
        command.append("--keep")
    if args.join_rounds:
        command += ["--join-rounds", str(args.join_rounds)]
    command += ["--workloads", args.workloads]
    print(f"== {system}", file=sys.stderr, flush=True)
    before = servers(args)
    load = LoadSampler()
    load.start()
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(command, cwd=ROOT, env=env, check=False)
    wall = time.perf_counter() - t0
    load.done.set()
    try:
        result: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError):
        result = {"system": system, "error": f"runner exited {proc.returncode} without a result"}
    finally:
        out.unlink(missing_ok=True)
    result["wall_s"] = wall
    after = servers(args)
    if after != before and "error" not in result:
        result["error"] = f"a server was restarted during the run: {before} -> {after}"
    result["load_1min_samples"] = load.samples
    if "--flat-jobs" in command:
        result.setdefault("notes", []).append(
            f"flat measured over {RQ_FORK_FLAT_CAP:,} jobs, not {sizes.flat:,}: the forking "
            "worker runs tens of jobs/s here (the rate is per second either way)"
        )
    return result


# -- the table ---------------------------------------------------------------------------


def _get(result: dict[str, Any], *path: str) -> float | None:
    value: Any = result
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


# (label, path in a result, higher is better, format)
METRICS: list[tuple[str, tuple[str, ...], bool, str]] = [
    ("(a) flat no-op jobs: jobs/s", ("flat", "jobs_per_s"), True, "{:,.0f}"),
    ("(a) flat: worker CPU ms per job", ("flat", "worker_cpu_ms_per_job"), False, "{:.2f}"),
    ("(b) chain: hop median, ms", ("chain", "hop", "median_ms"), False, "{:.2f}"),
    ("(b) chain: hop p99, ms", ("chain", "hop", "p99_ms"), False, "{:.2f}"),
    ("(c) join: latency median, ms", ("join", "latency", "median_ms"), False, "{:.2f}"),
    ("(c) join: latency p99, ms", ("join", "latency", "p99_ms"), False, "{:.2f}"),
    ("peak worker memory, MiB (PSS)", ("memory", "peak_pss_mib_all"), False, "{:.0f}"),
    ("  the same as summed RSS, MiB", ("memory", "peak_rss_mib_all"), False, "{:.0f}"),
]


def compare(jobchain: float | None, other: float | None, higher_better: bool) -> str:
    """How jobchain's figure compares with another system's: 'N.Nx better' or '... worse'."""
    if jobchain is None or other is None or jobchain <= 0 or other <= 0:
        return "n/a"
    factor = jobchain / other if higher_better else other / jobchain
    if 0.95 <= factor <= 1.05:
        return "even"
    return f"{factor:.1f}x better" if factor > 1 else f"{1 / factor:.1f}x worse"


def build_table(results: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for label, path, higher, fmt in METRICS:
        if all(_get(r, *path) is None for r in results.values()):
            continue  # a workload not run (--workloads)
        refs = {jc: _get(results[jc], *path) if jc in results else None for jc in JOBCHAIN}
        for system, result in results.items():
            value = _get(result, *path)
            row = {
                "metric": label,
                "system": system,
                "value": fmt.format(value) if value is not None else "n/a",
            }
            for jc in JOBCHAIN:
                if jc not in results:
                    continue
                row[f"{jc} is"] = "—" if system == jc else compare(refs[jc], value, higher)
            rows.append(row)
    return rows


def behind(results: dict[str, dict[str, Any]]) -> list[str]:
    """Every figure where a peer beats jobchain (SQLite or PostgreSQL)."""
    lines = []
    for label, path, higher, fmt in METRICS:
        for jc in JOBCHAIN:
            ours = _get(results[jc], *path) if jc in results else None
            if ours is None:
                continue
            better = []
            for system, result in results.items():
                theirs = _get(result, *path)
                if system in JOBCHAIN or theirs is None:
                    continue
                verdict = compare(ours, theirs, higher)
                if verdict.endswith("worse"):
                    better.append(f"{system} {fmt.format(theirs)} ({verdict.split()[0]})")
            if better:
                lines.append(f"{label}: {jc} {fmt.format(ours)} is behind " + ", ".join(better))
    return lines


def render(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0].keys())
    widths = {h: max(len(h), *(len(r.get(h, "")) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines.append("-" * len(lines[0]))
    previous = None
    for r in rows:
        cells = []
        for h in headers:
            text = r.get(h, "")
            if h == "metric" and text == previous:
                text = ""
            cells.append(text.rjust(widths[h]) if h == "value" else text.ljust(widths[h]))
        previous = r["metric"]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def header(
    args: argparse.Namespace,
    sizes: Sizes,
    started: tuple[time.struct_time, tuple[float, float, float]],
    results: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 0
    return [
        f"jobchain vs peers — {time.strftime('%Y-%m-%d %H:%M UTC', started[0])}, "
        f"scale {args.scale:g}",
        f"machine: {cores} cores, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; shared with other users "
        f"(load average at start {' '.join(f'{x:.2f}' for x in started[1])}"
        + (f", at end {' '.join(f'{x:.2f}' for x in os.getloadavg())})" if results else ")"),
        f"workloads: (a) {sizes.flat:,} independent no-op jobs enqueued before the workers "
        f"start; (b) a chain of {sizes.chain:,}; (c) {sizes.join_parents} parents -> 1 join, "
        f"{sizes.join_rounds} rounds one after another",
        "concurrency: 2 execution slots for every system"
        + (":" if results else " (the layout of each is printed with the table)"),
        *(f"  {system}: {r.get('layout', '?')}" for system, r in (results or {}).items()),
        "timing: each job takes time.time() at its start and end and appends them to a file; "
        "hop = child start - parent end; join latency = join start - last parent end; "
        "jobs/s from the moment every slot ran its first job to the last end",
        "memory: peak over 0.25 s samples of the summed PSS of the worker processes and their "
        "children (pool processes, work-horses; PSS splits pages shared after a fork, summed "
        "RSS counts them in every process); brokers/databases (Redis, PostgreSQL) excluded",
        "CPU: user+sys seconds of those processes over the flat window / jobs in it "
        "(broker/database CPU excluded)",
        "comparison columns: how jobchain (SQLite / PostgreSQL) compares with the row's system",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument(
        "--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="libpq URL"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench-peers.json")
    parser.add_argument("--timeout", type=float, default=900.0, help="per workload (s)")
    parser.add_argument("--keep", action="store_true", help="keep worker logs")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a failed system")
    parser.add_argument(
        "--workloads", default="chain,join,flat", help="a subset of chain,join,flat (profiling)"
    )
    parser.add_argument(
        "--join-rounds", type=int, help="rounds of the join workload (A/B runs of one change)"
    )
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - SYSTEMS.keys()
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    peers_python = PEERS_VENV / "bin" / "python"
    if any(SYSTEMS[s][1] for s in systems):
        if not args.skip_install:
            peers_python = ensure_peers_venv()
        elif not peers_python.exists():
            parser.error(f"--skip-install, but {PEERS_VENV} does not exist")

    sizes = scaled_sizes(args)
    started = (time.gmtime(), os.getloadavg())
    head = header(args, sizes, started)
    for line in head:
        print(line, flush=True)
    results: dict[str, dict[str, Any]] = {}
    for system in systems:
        result = run_system(system, args, peers_python)
        for attempt in range(args.retries):
            if "error" not in result:
                break
            # e.g. another user restarted PostgreSQL mid-run: the figures would be wrong
            failed = result["error"].splitlines()[0][:200]
            print(f"== {system} failed ({failed}); running it again", file=sys.stderr)
            result = run_system(system, args, peers_python)
            result.setdefault("notes", []).append(
                f"run {attempt + 2}: the previous run failed: {failed}"
            )
        results[system] = result
    rows = build_table(results)
    head = header(args, sizes, started, results)
    print()
    for line in head:
        print(line)
    print()
    print(render(rows) if rows else "(no figures)")
    print()
    lagging = behind(results)
    print("where jobchain is behind:" if lagging else "jobchain is behind nowhere in this run")
    for line in lagging:
        print(f"  {line}")
    print()
    for line in details(results):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "header": head,
                "table": rows,
                "table_text": render(rows) if rows else "",
                "behind": lagging,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {args.out}")
    return 1 if any("error" in r for r in results.values()) else 0


def details(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    fmt: Callable[[Any], str] = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    for system, r in results.items():
        loads = r.get("load_1min_samples") or []
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
        lines.append(f"{system}: {r.get('layout', '')}")
        lines.append(f"    chain: {r.get('chain_how', '')}; join: {r.get('join_how', '')}")
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items())
        flat = r.get("flat") or {}
        chain = (r.get("chain") or {}).get("hop") or {}
        lines.append(
            f"    versions: {versions}; wall {fmt(r.get('wall_s'))} s; load (1 min) {load}"
        )
        if flat:
            lines.append(
                f"    flat: {flat.get('jobs')} jobs, {flat.get('jobs_in_window')} in the "
                f"{fmt(flat.get('window_seconds'))} s window (slot start skew "
                f"{fmt(flat.get('slot_start_skew_s'))} s, per slot {flat.get('jobs_per_slot')}); "
                f"all jobs/first start: {fmt(flat.get('jobs_per_s_all'))} jobs/s"
            )
        if chain:
            lines.append(
                f"    chain hop max {fmt(chain.get('max_ms'))} ms, mean {fmt(chain.get('mean_ms'))}"
                f" ms; duplicates run: {r.get('duplicates')}"
            )
        for note in r.get("notes") or []:
            lines.append(f"    note: {note}")
        if "error" in r:
            lines.append(f"    ERROR: {r['error']} (logs: {r.get('workdir', 'n/a')})")
    return lines


if __name__ == "__main__":
    sys.exit(main())
