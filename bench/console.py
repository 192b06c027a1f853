"""Server time of the console's pages on a big database, and the plan of every query.

    .venv/bin/python -m bench.million_jobs          # once: var/bench/console.db, 1,000,000 jobs
    .venv/bin/python -m bench.console               # the table below
    .venv/bin/python -m bench.console --plans       # also each statement's EXPLAIN QUERY PLAN

Each page is requested through the real app (Flask's test client with a logged-in reader
session, so no network is involved): the time is what the server spends on the request,
queries and rendering included. Every page is fetched once to warm up, then ``--runs`` times;
the table shows the median and the slowest run, and the median CPU time of the request
(which does not grow when other processes share the machine). Every statement the pages ran is then
explained; a statement that scans a whole table (or sorts all rows) is flagged.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from app.web import create_app
from bench.million_jobs import DEFAULT_PATH
from config import Settings
from tests.admin.query_plans import login, sqlite_plan, statements, unindexed

READER = "bench-reader-token"


def pages(engine: Engine) -> list[tuple[str, str]]:
    """(what, path) of each measured page, with ids taken from the database."""
    with engine.connect() as conn:
        top = conn.execute(text("SELECT max(id) FROM jobs")).scalar_one()
        failed = conn.execute(
            text("SELECT root_id FROM jobs WHERE status = 'FAILED' ORDER BY id DESC LIMIT 1")
        ).scalar_one()
        big = conn.execute(
            text("SELECT root_id FROM jobs WHERE depth >= 6 ORDER BY id DESC LIMIT 1")
        ).scalar_one()
        size = conn.execute(
            text("SELECT count(*) FROM jobs WHERE root_id = :r"), {"r": big}
        ).scalar_one()
        day = conn.execute(text("SELECT max(created_at) FROM jobs")).scalar_one() - 86400
    since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(day))
    return [
        ("jobs, unfiltered", "/admin/jobs"),
        ("jobs, status=FAILED", "/admin/jobs?status=FAILED"),
        ("jobs, status=SKIPPED, older page", f"/admin/jobs?status=SKIPPED&before={top // 2}"),
        ("jobs, job type CFS", "/admin/jobs?type=CFS"),
        ("jobs, target 155.LPG", "/admin/jobs?target=155.LPG"),
        ("jobs, FAILED + target 155.LPG", "/admin/jobs?status=FAILED&target=155.LPG"),
        ("jobs, FINISHED + type HTTP", "/admin/jobs?status=FINISHED&type=HTTP"),
        ("jobs, FINISHED + unknown target", "/admin/jobs?status=FINISHED&target=nope.X"),
        ("jobs, CANCELLED + type NOOP (window)", "/admin/jobs?status=CANCELLED&type=NOOP"),
        ("jobs, text 'connection refused'", "/admin/jobs?q=connection+refused"),
        ("jobs, text, no match (1 window)", "/admin/jobs?q=no+such+words"),
        ("jobs, FAILED + text 'locked'", "/admin/jobs?status=FAILED&q=locked"),
        ("jobs, last 24 h (UTC)", f"/admin/jobs?since={since}&tz=UTC"),
        ("jobs, deep keyset page (id < 1000)", "/admin/jobs?before=1000"),
        (f"chain of a failed job ({failed})", f"/admin/chains/{failed}"),
        (f"chain, {size} jobs, depth >= 6 ({big})", f"/admin/chains/{big}"),
        ("job page", f"/admin/jobs/{failed}"),
    ]


def measure(get: Callable[[], Any], runs: int) -> tuple[float, float, float]:
    """Median and slowest wall time, and median CPU time of this thread (the request runs
    in it, SQLite included: what the page costs even when other processes share the CPU)."""
    get()
    wall, cpu = [], []
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.thread_time()
        answer = get()
        wall.append(time.perf_counter() - began)
        cpu.append(time.thread_time() - began_cpu)
        if answer.status_code != 200:
            raise SystemExit(f"HTTP {answer.status_code}")
    return statistics.median(wall) * 1000, max(wall) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--plans", action="store_true", help="print every query plan")
    args = parser.parse_args()
    if not args.database.exists():
        raise SystemExit(f"{args.database} is missing: run python -m bench.million_jobs first")
    settings = replace(
        Settings.from_env(),
        database_url=f"sqlite:///{args.database}",
        api_tokens=(f"reader:{READER}",),
    )
    app = create_app(settings)
    engine = app.extensions["jobchain"].db.engine
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    client = app.test_client()
    login(client, READER)
    print(f"{total:,} jobs in {args.database}; median and slowest of {args.runs} runs\n")
    print(f"| {'page':<40} | {'median ms':>9} | {'max ms':>7} | {'cpu ms':>6} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 9}|{'-' * 8}|")
    flagged: list[str] = []
    for what, path in pages(engine):
        median, slowest, cpu = measure(lambda path=path: client.get(path), args.runs)
        print(f"| {what:<40} | {median:>9.1f} | {slowest:>7.1f} | {cpu:>6.1f} |")
        with statements(engine) as seen:
            client.get(path)
        for sql, params in seen:
            plan = sqlite_plan(engine, sql, params)
            if args.plans:
                print(f"\n{what}: {' '.join(sql.split())}\n    " + "\n    ".join(plan))
            flagged.extend(f"{what}: {line}" for line in unindexed(plan, sql))
    print("\nevery query uses an index" if not flagged else "\nUNINDEXED:\n" + "\n".join(flagged))


if __name__ == "__main__":
    main()
