"""The reliability battery's short forms (``python -m tests.reliability`` runs the long ones).

Each scenario starts real processes (an API node under gunicorn, ``jobchain worker``s), injects
its faults and ends with the one invariant checker of ``tests/reliability/invariants.py``.
The first tests show that checker is not blind: a finished run passes, and each kind of
damage to its database, journal or API log is reported under the right category.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from app import failpoints
from app.domain.payload import Limits, parse_tree
from app.runner.worker_pool import WorkerPool
from app.store import schema, submission
from app.store.database import Database
from jobs import REGISTRY
from tests.conftest import POSTGRES_ADMIN_URL, TEST_SETTINGS
from tests.helpers import wait_until
from tests.reliability import scenarios, workload
from tests.reliability.api import Accepted, ApiLog
from tests.reliability.invariants import Report, check
from tests.reliability.jobtypes import JOURNAL_ENV
from tests.reliability.probe import Probe
from tests.reliability.scenarios import SHORT, Result

# -- the checker itself ---------------------------------------------------------------------


@dataclass
class Finished:
    path: Path
    journal: Path
    accepted: list[Accepted]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """A chain of 3 and a join of 3 run to the end by a worker pool, with their journal."""
    directory = tmp_path_factory.mktemp("checked")
    path, journal = directory / "jobchain.db", directory / "journal.log"
    db = Database(f"sqlite:///{path}")
    schema.upgrade(db)
    accepted = []
    for shape in (workload.chain("c", 3), workload.join("j", 3)):
        spec = parse_tree(shape.payload, Limits(), lambda name: name in REGISTRY)
        accepted.append(Accepted(submission.submit(db, spec), shape))
    os.environ[JOURNAL_ENV] = str(journal)
    pool = WorkerPool(db, REGISTRY, replace(TEST_SETTINGS, database_url=db.url)).start()
    try:
        probe = Probe(db.url)
        wait_until(lambda: probe.drained(11), what="the checked run to end")
        probe.close()
    finally:
        pool.stop(5)
        del os.environ[JOURNAL_ENV]
        db.dispose()
    yield Finished(path, journal, accepted)


def damaged(finished: Finished, tmp_path: Path, sql: str) -> Report:
    copy = tmp_path / "copy.db"
    shutil.copy(finished.path, copy)
    with sqlite3.connect(copy) as conn:
        conn.executescript(sql)
    return check(f"sqlite:///{copy}", finished.accepted, journal=finished.journal)


def test_a_clean_run_passes(finished: Finished) -> None:
    report = check(f"sqlite:///{finished.path}", finished.accepted, finished.journal, ApiLog())
    assert report.ok, report.describe()
    assert report.jobs == 11
    assert report.runs == 8  # every BATTERY job once; JOIN nodes write no journal


RELEASE_AGAIN = """
INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason)
SELECT job_id, from_status, to_status, attempt, at + 1, reason FROM job_events
WHERE job_id = (SELECT id FROM jobs WHERE target_object = 'c.2.BATTERY')
  AND reason = 'parent finished';
"""
FINISH_AGAIN = """
INSERT INTO job_events (job_id, from_status, to_status, attempt, at, reason)
SELECT job_id, 'PROCESSING', 'FINISHED', attempt, at + 1, 'finish' FROM job_events
WHERE job_id = (SELECT id FROM jobs WHERE target_object = 'c.BATTERY') AND reason = 'finish';
"""
CLAIM_WHILE_PROCESSING = """
UPDATE job_events SET from_status = 'PROCESSING' WHERE id = (
  SELECT min(id) FROM job_events WHERE reason = 'claim'
  AND job_id = (SELECT id FROM jobs WHERE target_object = 'c.3.BATTERY'));
"""
STILL_RUNNING = "UPDATE jobs SET status = 'PROCESSING' WHERE target_object = 'j.after.BATTERY';"
ONE_ARRIVAL_MISSING = "DELETE FROM join_arrivals WHERE id = (SELECT max(id) FROM join_arrivals);"
JOB_MISSING = "DELETE FROM jobs WHERE target_object = 'c.3.BATTERY';"
STORED_TWICE = """
INSERT INTO jobs (root_id, parent_id, position, depth, target_object, job_type, parameters,
  execute_on_error, max_attempts, status, attempt, attempt_floor, run_after,
  cancel_requested, created_at, updated_at)
SELECT 999, NULL, 0, 0, target_object, job_type, parameters, execute_on_error, max_attempts,
  status, attempt, attempt_floor, run_after, cancel_requested, created_at, updated_at
FROM jobs WHERE target_object = 'c.BATTERY';
"""


@pytest.mark.parametrize(
    ("sql", "categories"),
    [
        (RELEASE_AGAIN, {"doubled", "history"}),
        (FINISH_AGAIN, {"doubled", "history"}),
        (CLAIM_WHILE_PROCESSING, {"history"}),
        (STILL_RUNNING, {"lost", "history"}),
        (ONE_ARRIVAL_MISSING, {"joins_never"}),
        (JOB_MISSING, {"lost"}),
        (STORED_TWICE, {"doubled", "lost", "history"}),
    ],
    ids=[
        "released twice",
        "ended twice",
        "two leases",
        "not terminal",
        "arrival",
        "missing",
        "twice",
    ],
)
def test_the_checker_reports_damage(
    finished: Finished, tmp_path: Path, sql: str, categories: set[str]
) -> None:
    report = damaged(finished, tmp_path, sql)
    assert {c for c, problems in report.problems.items() if problems} == categories, (
        report.describe()
    )


def test_the_checker_reports_runs_and_answers(finished: Finished, tmp_path: Path) -> None:
    journal = tmp_path / "journal.log"
    lines = finished.journal.read_text().splitlines()
    job_id, attempt, pid, at = lines[0].split()[1:]
    extra = [f"start {job_id} {attempt} {int(pid) + 1} {float(at) + 0.0001}"]
    unfinished = [line for line in lines if not line.startswith(f"end {job_id} ")]
    journal.write_text("\n".join([*lines, *extra]) + "\n")
    api = ApiLog()
    api.note(500, "POST x: internal error", 0.1)
    api.note(503, "POST y: busy", 0.1, retry_after="5")
    api.note(None, "POST z: timed out", 10.0)
    url = f"sqlite:///{finished.path}"
    report = check(url, finished.accepted, journal, api, runs_once=True)
    assert report.count("doubled") == 1, report.describe()  # one job ran in two processes
    assert report.count("api") == 3, report.describe()  # the 500, the hang, a 503 not allowed
    assert check(url, finished.accepted, journal, api, allow_busy=True).count("api") == 2
    journal.write_text("\n".join(unfinished) + "\n")
    assert check(url, finished.accepted, journal).count("lost") == 1  # FINISHED, never ran


# -- the scenarios, short forms ---------------------------------------------------------------


@pytest.fixture
def server(postgres_url: str) -> str:
    """The PostgreSQL server (the ``postgres_url`` fixture skips or fails where none runs)."""
    return POSTGRES_ADMIN_URL


def passed(result: Result) -> None:
    assert result.passed, f"{result.report.describe()}\nlogs: {result.workdir}"


@pytest.mark.timeout(300)
def test_kill_soak(server: str) -> None:
    result = scenarios.kill_soak(SHORT["kill_soak"], server)
    passed(result)
    assert result.jobs >= 300


@pytest.mark.timeout(300)
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_crash_points(database: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("server") if database == "postgresql" else ""
    config = replace(SHORT["crash_points"], database=database)
    result = scenarios.crash_points(config, server or POSTGRES_ADMIN_URL)
    passed(result)
    for point in scenarios.POINTS:
        assert f"{point} {config.repetitions}" in result.faults


@pytest.mark.timeout(300)
def test_double_claim(server: str) -> None:
    result = scenarios.double_claim(SHORT["double_claim"], server)
    passed(result)
    assert result.report.runs == result.jobs == 500


@pytest.mark.timeout(300)
def test_stale_lease(server: str) -> None:
    passed(scenarios.stale_lease(SHORT["stale_lease"], server))


@pytest.mark.timeout(300)
def test_postgres_connections_terminated(server: str) -> None:
    passed(scenarios.postgres_faults(SHORT["postgres_faults"], server))


@pytest.mark.timeout(300)
def test_sqlite_locked_by_another_process() -> None:
    passed(scenarios.sqlite_lock(SHORT["sqlite_lock"]))


# -- failpoints ---------------------------------------------------------------------------------


def test_failpoint_specs() -> None:
    rules = failpoints.parse("after_claim, mid_join:3,mid_job:0.25")
    assert set(rules) == {"after_claim", "mid_join", "mid_job"}
    assert (rules["mid_join"].nth, rules["mid_job"].probability) == (3, 0.25)
    for bad in ("x:0", "x:1.5", "x:often"):
        with pytest.raises(ValueError):
            failpoints.parse(bad)


@pytest.mark.parametrize(
    ("spec", "code"), [("", 0), ("other", 0), ("here:4", 0), ("here:3", 77), ("here", 77)]
)
def test_a_failpoint_exits_only_where_armed(spec: str, code: int) -> None:
    script = "from app.failpoints import failpoint\nfor _ in range(3): failpoint('here')\n"
    env = {**os.environ, failpoints.ENV: spec}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert ("jobchain failpoint here: exiting" in done.stderr) == bool(code)
