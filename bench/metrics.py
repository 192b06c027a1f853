"""Server time of a ``GET /metrics`` scrape on a big database, and of reading the event log.

    .venv/bin/python -m bench.million_jobs          # once: var/bench/console.db, 1,000,000 jobs
    .venv/bin/python -m bench.metrics               # the figures below
    .venv/bin/python -m bench.metrics --database /tmp/other.db --runs 50

A scrape goes through the real app (Flask's test client from a loopback address): the
database gauges are queried and everything is rendered. The event-log reader runs on its
own thread, not in the scrape; its cost is shown apart: one batch of 5,000 events (a busy
second's worth) read and counted. The query plan of each gauge's statement is printed: none
may scan the jobs table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine, event, text

from app.domain.read_cursor import ReadCursor
from app.metrics.tail import BATCH
from app.web import create_app
from bench.million_jobs import DEFAULT_PATH
from config import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if not args.database.exists():
        raise SystemExit(f"{args.database} does not exist: run python -m bench.million_jobs")
    settings = replace(Settings(), database_url=f"sqlite:///{args.database}")
    app = create_app(settings)  # migrates the database to head (adds the alert tables)
    rt = app.extensions["jobchain"]
    metrics = app.extensions["jobchain_metrics"]
    client = app.test_client()
    with rt.db.read() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        events = conn.execute(text("SELECT max(id) FROM job_events")).scalar_one()
    print(f"{args.database}: {jobs:,} jobs, {events:,} events")

    captured = _capture(rt.db.engine)
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    first = client.get("/metrics", environ_base=loopback)
    assert first.status_code == 200, first.status_code
    statements = list(dict.fromkeys(captured))
    times, cpu = [], []
    for _ in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        answer = client.get("/metrics", environ_base=loopback)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert answer.status_code == 200
    print(
        f"GET /metrics: median {statistics.median(times) * 1000:.1f} ms, "
        f"slowest {max(times) * 1000:.1f} ms, median CPU {statistics.median(cpu) * 1000:.1f} ms "
        f"({args.runs} runs, {len(answer.data):,} bytes)"
    )

    metrics.tail.stop()
    cursor = ReadCursor(max(0, events - BATCH))
    metrics.tail._events = cursor
    start = time.perf_counter()
    read = metrics.tail.poll()
    elapsed = time.perf_counter() - start
    print(f"event log: {read:,} events read and counted in {elapsed * 1000:.1f} ms (own thread)")

    print("\nplans of the scrape's statements:")
    with rt.db.engine.connect() as conn:
        for sql in statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", _params(sql)).all()
            steps = [row[-1] for row in plan]
            flag = "  <-- scans jobs" if any(s == "SCAN jobs" for s in steps) else ""
            print(f"  {' '.join(sql.split())[:90]}{flag}")
            for step in steps:
                print(f"      {step}")


def _capture(engine: Engine) -> list[str]:
    found: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        found.append(statement)

    return found


def _params(sql: str) -> tuple[object, ...]:
    return tuple(0 for _ in range(sql.count("?")))


if __name__ == "__main__":
    main()
