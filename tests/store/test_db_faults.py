"""Real database faults: PostgreSQL connections killed mid-run, SQLite locked by another process,
PostgreSQL unreachable. Workers recover and nothing is lost; API clients get a prompt 503
with Retry-After, never a 500 or a hang.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.pool import NullPool

from app.domain.statuses import Status, Transition
from app.runner.worker_pool import WorkerPool
from app.store import claims, completion
from app.store.database import Database, DatabaseUnavailable, limit_wait, reset_wait
from app.store.tables import job_events, jobs
from config import Settings
from tests.conftest import TEST_SETTINGS
from tests.helpers import AUTH, LiveServer, wait_until
from tests.runner.test_engine_chain import submit

REQUEST_WAIT = 1.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return replace(TEST_SETTINGS, database_url=database_url, request_db_wait_seconds=REQUEST_WAIT)


def chain(depth: int, seconds: float) -> dict[str, Any]:
    node: dict[str, Any] = {"targetObject": "last.SLEEP", "parameters": {"seconds": seconds}}
    for level in range(depth - 1):
        node = {
            "targetObject": f"{level}.SLEEP",
            "parameters": {"seconds": seconds},
            "nextJobs": [node],
        }
    return node


def chained_once(db: Database) -> None:
    """Every job FINISHED once, and every child was started by its parent exactly once."""
    with db.read() as conn:
        statuses = dict(
            conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        )
        finishes = conn.execute(
            select(job_events.c.job_id, func.count())
            .where(job_events.c.reason == Transition.FINISH.value)
            .group_by(job_events.c.job_id)
        ).all()
        starts = conn.execute(
            select(job_events.c.job_id, func.count())
            .where(job_events.c.reason == Transition.PARENT_FINISHED.value)
            .group_by(job_events.c.job_id)
        ).all()
        total = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
        children = conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.parent_id.is_not(None))
        ).scalar_one()
    assert statuses == {Status.FINISHED.value: total}
    assert len(finishes) == total and {n for _, n in finishes} == {1}
    assert len(starts) == children and {n for _, n in starts} == {1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_workers_survive_their_connections_being_terminated(db: Database, pool: WorkerPool) -> None:
    roots = [submit(db, chain(depth=15, seconds=0.1)) for _ in range(3)]
    killer = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    rounds: list[int] = []  # connections killed per round

    def kill_connections() -> None:
        with killer.connect() as conn:  # its own connection is spared
            while not stop.wait(0.25):
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                if killed:
                    rounds.append(killed)

    thread = threading.Thread(target=kill_connections, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(rounds) >= 5, timeout=20, what="connections to be killed")
        wait_until(lambda: all_finished(db, roots), timeout=60, what="every chain to end")
    finally:
        stop.set()
        thread.join(5)
    chained_once(db)
    # The pool still works: its threads are alive and take new work at once.
    assert all(t.is_alive() for t in pool._threads)
    late = submit(db, {"targetObject": "late.NOOP"})
    wait_until(lambda: all_finished(db, [late]), timeout=10, what="a job after the faults")


def all_finished(db: Database, roots: list[int]) -> bool:
    """Whether the chains ended; a read whose connection was killed just asks again."""
    try:
        with db.read() as conn:
            open_jobs = conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.root_id.in_(roots), jobs.c.status != Status.FINISHED.value)
            ).scalar_one()
    except DatabaseUnavailable:
        return False
    return open_jobs == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_finish_whose_commit_fails_is_replayed_once(db: Database) -> None:
    """The connection dies as COMMIT is sent: complete() runs again; its guards make the
    second run record the job once and claim the released child once."""
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    (claim,) = claims.claim(db, owner="w", lease_seconds=30)
    killer = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    commits: list[int] = []

    @event.listens_for(db.engine, "commit")
    def _kill_first_commit(conn: Any) -> None:
        commits.append(1)
        if len(commits) == 1:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with killer.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    done = completion.Done(claim.id, claim.lease_token, completion.Outcome(failed=False))
    recorded_now = completion.record_and_claim(db, [done], owner="w", claim_limit=5)
    event.remove(db.engine, "commit", _kill_first_commit)

    assert len(commits) >= 2
    assert [c.target_object for c in recorded_now.claims] == ["b.NOOP"]
    assert recorded_now.claims[0].id != root
    chained_events = [r for r in events_of(db) if r[1] in {"finish", "claim"}]
    assert sorted(chained_events) == sorted(
        [(root, "claim"), (root, "finish"), (recorded_now.claims[0].id, "claim")]
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_call_repeated_after_a_lost_answer_takes_over_its_claims(db: Database) -> None:
    """A worker whose record_and_claim() committed but raised (the answer was lost for longer than
    the database wait) calls again with the same token: nothing is recorded twice and the
    jobs the first call claimed are handed to it, not left to expire."""
    root = submit(
        db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": f"{i}.NOOP"} for i in "bc"]}
    )
    (claim,) = claims.claim(db, owner="w", lease_seconds=30)
    done = [completion.Done(claim.id, claim.lease_token, completion.Outcome(failed=False))]
    first = completion.record_and_claim(db, done, owner="w", claim_limit=1, claim_token="t-1")
    again = completion.record_and_claim(
        db, done, owner="w", claim_limit=1, claim_token="t-1", again=True
    )
    assert again.claims == first.claims and len(first.claims) == 1
    assert again.statuses == {root: None}  # already recorded: the guard makes it a no-op
    assert sorted(reason for _, reason in events_of(db)).count("claim") == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_unpinged_hot_path_survives_a_pooled_connection_that_died(db: Database) -> None:
    """record_and_claim() checks out its connection without the liveness ping; when that
    pooled connection died while idle, its first statement fails, nothing was written,
    and the transaction runs again on a new connection: the job is recorded once and
    its child claimed once. Other checkouts still ping."""
    submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    (claim,) = claims.claim(db, owner="w", lease_seconds=30)
    with db.engine.connect() as pooled:  # the connection the next checkout gets back
        pid = pooled.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    _terminate(db, pid)
    pings: list[int] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real_ping(dbapi_connection))

    db.engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    # The replay announces what it may have released (pg_notify, on a pinged checkout of
    # its own, after the commit): left out here, so every checkout counted is the hot path's.
    wakeups, db.wakeups = db.wakeups, None
    try:
        done = completion.Done(claim.id, claim.lease_token, completion.Outcome(failed=False))
        recorded = completion.record_and_claim(db, [done], owner="w", claim_limit=5)
        assert pings == []
        assert recorded.statuses == {claim.id: Status.FINISHED}
        assert [c.target_object for c in recorded.claims] == ["b.NOOP"]
        with db.read():  # an ordinary checkout still pings
            pass
        assert pings == [1]
    finally:
        db.engine.dialect.do_ping = real_ping  # type: ignore[method-assign]
        db.wakeups = wakeups
    reasons = sorted(reason for _, reason in events_of(db))
    assert reasons.count("finish") == 1 and reasons.count("claim") == 2


def _terminate(db: Database, pid: int) -> None:
    """Terminate a backend from a connection outside ``db``'s pool; wait until it is gone."""
    killer = create_engine(db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            wait_until(lambda: not conn.execute(alive, {"pid": pid}).scalar(), timeout=5)
    finally:
        killer.dispose()


def events_of(db: Database) -> list[tuple[int, str]]:
    with db.read() as conn:
        return [(r.job_id, r.reason) for r in conn.execute(select(job_events))]


def test_an_unreachable_postgresql_is_unavailable_within_the_wait() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere", listen_notify=False)
    token = limit_wait(0.5)
    try:
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            db.write(lambda conn: conn.execute(text("SELECT 1")))
        with pytest.raises(DatabaseUnavailable), db.read() as conn:
            conn.execute(text("SELECT 1"))
        assert time.monotonic() - began < 5
    finally:
        reset_wait(token)
        db.dispose()


class SqliteLocker:
    """Another process holding ``BEGIN EXCLUSIVE`` on the database file until released."""

    SCRIPT = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.execute('COMMIT')\n"
    )

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


@pytest.fixture
def locker(db: Database) -> Iterator[list[SqliteLocker]]:
    held: list[SqliteLocker] = []
    yield held
    for lock in held:
        lock.release()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_sqlite_gives_503_with_retry_after_and_loses_nothing(
    db: Database, pool: WorkerPool, live: LiveServer, locker: list[SqliteLocker]
) -> None:
    url = f"{live.url}/api/v1/jobs"
    body = {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]}
    accepted = [requests.post(url, json=body, headers=AUTH, timeout=30).json()["id"]]

    locker.append(SqliteLocker(str(db.engine.url.database)))
    began = time.monotonic()
    refused = requests.post(url, json=body, headers=AUTH, timeout=30)
    assert time.monotonic() - began < REQUEST_WAIT + 3
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]["code"] == "database_unavailable"
    # Reads go on in WAL mode while another process holds the write lock.
    assert requests.get(f"{url}/{accepted[0]}", headers=AUTH, timeout=30).status_code == 200

    locker[0].release()
    retried = requests.post(url, json=body, headers=AUTH, timeout=30)
    assert retried.status_code == 201, retried.text
    accepted.append(retried.json()["id"])
    wait_until(lambda: all_finished(db, accepted), timeout=20, what="every accepted chain")
    chained_once(db)  # the refused submission left nothing behind
