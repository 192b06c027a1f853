"""``python -m tests.reliability`` (``make reliability``): the long forms of the battery.

Runs the chosen scenarios one after the other and prints one summary row each. Exit status 1
if any failed; the work directory (process logs, journal, SQLite file) of a failed scenario
is kept and printed.

    python -m tests.reliability                          # everything, long forms (tens of minutes)
    python -m tests.reliability --only kill_soak,stale_lease
    python -m tests.reliability --scale 0.1              # a tenth of the jobs, kills and faults
    python -m tests.reliability --short                  # the forms `make test` runs
    python -m tests.reliability --no-restart             # skip the PostgreSQL server restart
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from tests.reliability import scenarios
from tests.reliability.cluster import DEFAULT_POSTGRES
from tests.reliability.scenarios import Result

# (name, scenario function, long-form config), in running order.
PLAN: list[tuple[str, Callable[..., Result], Any]] = [
    ("kill_soak", scenarios.kill_soak, scenarios.KillSoak()),
    ("crash_points", scenarios.crash_points, scenarios.CrashPoints(database="sqlite")),
    ("crash_points", scenarios.crash_points, scenarios.CrashPoints(database="postgresql")),
    ("double_claim", scenarios.double_claim, scenarios.DoubleClaim()),
    ("stale_lease", scenarios.stale_lease, scenarios.StaleLease(database="sqlite")),
    ("stale_lease", scenarios.stale_lease, scenarios.StaleLease(database="postgresql")),
    ("postgres_faults", scenarios.postgres_faults, scenarios.PostgresFaults()),
    ("sqlite_lock", scenarios.sqlite_lock, scenarios.SqliteLock()),
]
# The fields that --scale multiplies (at least 1 is kept).
SCALED = {"jobs", "kills", "repetitions", "processes", "rounds", "terminations"}

COLUMNS = (
    "scenario",
    "database",
    "jobs",
    "kills/faults",
    "lost",
    "doubled",
    "joins 2x/never",
    "5xx",
    "other",
    "wall",
    "result",
)


def scaled(config: Any, factor: float) -> Any:
    if factor == 1:
        return config
    changes = {
        f.name: max(1, math.ceil(getattr(config, f.name) * factor))
        for f in fields(config)
        if f.name in SCALED
    }
    return replace(config, **changes)


def row(result: Result) -> list[str]:
    report = result.report
    other = report.count("history") + report.count("process")
    return [
        result.scenario,
        result.database,
        f"{report.jobs:,}",
        result.faults,
        str(report.count("lost")),
        str(report.count("doubled")),
        f"{report.count('joins_twice')}/{report.count('joins_never')}",
        str(report.count("api")),
        str(other),
        f"{result.seconds:.0f} s",
        "PASS" if result.passed else "FAIL",
    ]


def table(rows: list[list[str]]) -> str:
    lines = [list(COLUMNS), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    names = sorted({name for name, _, _ in PLAN})
    parser.add_argument("--only", help=f"comma-separated scenarios: {', '.join(names)}")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], help="only this one")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply jobs and faults")
    parser.add_argument("--short", action="store_true", help="the short forms of make test")
    parser.add_argument("--no-restart", action="store_true", help="no PostgreSQL restart")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="server to use")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    only = set(args.only.split(",")) if args.only else set(names)
    unknown = only - set(names)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    rows, failed = [], []
    for name, scenario, config in PLAN:
        if name not in only:
            continue
        if args.short:
            config = replace(scenarios.SHORT[name], **_database_of(config))
        config = scaled(config, args.scale)
        if args.no_restart and isinstance(config, scenarios.PostgresFaults):
            config = replace(config, restart=False)
        database = getattr(config, "database", "sqlite" if name == "sqlite_lock" else "postgresql")
        if args.database and database != args.database:
            continue
        result = scenario(config, args.postgres_url)
        rows.append(row(result))
        if not result.passed:
            failed.append(result)
            print(f"\n{name} on {result.database} FAILED; logs in {result.workdir}", flush=True)
            print(result.report.describe(), flush=True)
    print()
    print(table(rows))
    return 1 if failed else 0


def _database_of(config: Any) -> dict[str, str]:
    return {"database": config.database} if hasattr(config, "database") else {}


if __name__ == "__main__":
    sys.exit(main())
