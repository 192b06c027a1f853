"""Cross-process wake-ups on PostgreSQL (LISTEN/NOTIFY), with real ``jobchain worker`` processes.

The worker processes here poll only every 30 s, so a job they start within seconds of
another process making it claimable can only have been announced by a notification.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.domain.statuses import Status
from app.runner.worker_process import READY_LINE
from app.store import claims, completion, queries
from app.store.database import Database
from app.store.wakeups import APPLICATION_NAME
from tests.helpers import wait_until
from tests.runner.test_engine_chain import submit

REPO = Path(__file__).resolve().parents[2]
POLL = 30.0  # the workers' idle poll: far longer than any wait below
FAST = 5.0  # how long a notified wake-up may take here, on a busy shared machine

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class WorkerProcess:
    """A ``jobchain worker`` subprocess with its output in files."""

    def __init__(self, database_url: str, logs: Path, name: str, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
        environ.update(
            JOBCHAIN_DATABASE_URL=database_url,
            JOBCHAIN_WORKERS="1",
            JOBCHAIN_IDLE_POLL_SECONDS=str(POLL),
            JOBCHAIN_REAP_INTERVAL_SECONDS="30",
            **env,
        )
        script = Path(sys.executable).with_name("jobchain")
        self.out = logs / f"{name}.out"
        self.err = logs / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [str(script), "worker"], cwd=REPO, env=environ, stdout=out, stderr=err
            )
        match = wait_until(self._ready, timeout=30, what=f"{name} to be ready")
        self.owner = match.group(1)

    def _ready(self) -> re.Match[str] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.err.read_text()}")
        return re.search(rf"{READY_LINE}: (\S+)", self.out.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str = "worker", **env: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path, name, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def listeners(db: Database) -> dict[int, str]:
    """Listener connections on this database: backend pid -> the last query it ran."""
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE :name"
            ),
            {"name": f"{APPLICATION_NAME}:%"},
        ).all()
    return {row.pid: row.query for row in rows}


def listening(db: Database, exclude: frozenset[int] = frozenset()) -> int | None:
    """The pid of a listener (not in ``exclude``) that has run LISTEN, else None."""
    for pid, query in listeners(db).items():
        if pid not in exclude and query.startswith("LISTEN"):
            return pid
    return None


def job(db: Database, job_id: int) -> dict[str, Any]:
    found = queries.get_job(db, job_id)
    assert found is not None
    return found


def test_a_child_released_in_one_process_starts_at_once_in_another(
    db: Database, start_worker: Callable[..., WorkerProcess]
) -> None:
    root = submit(db, {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "b.NOOP"}]})
    # This process plays the worker on machine A: it holds the root...
    (claim,) = claims.claim(db, owner="machine-a", lease_seconds=60)
    assert claim.id == root
    start_worker("machine-b")  # ...while machine B starts, finds nothing and idles 30 s
    wait_until(lambda: listening(db), what="machine B to LISTEN")
    child = job(db, root)["next_job_ids"][0]

    done = completion.Done(claim.id, claim.lease_token, completion.Outcome(failed=False))
    completion.record_and_claim(db, [done])  # releases the child and notifies

    wait_until(
        lambda: job(db, child)["status"] == Status.FINISHED, timeout=FAST, what="B runs the child"
    )
    assert job(db, child)["started_at"] - job(db, root)["finished_at"] < FAST


def test_the_listener_reconnects_after_its_connection_is_terminated(
    db: Database, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("machine-b")
    first = wait_until(lambda: listening(db), what="machine B to LISTEN")
    with db.read() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
    again = frozenset({first})
    wait_until(lambda: listening(db, exclude=again), timeout=FAST, what="a new listener")

    for name in ("after-reconnect-1", "after-reconnect-2"):
        job_id = submit(db, {"targetObject": f"{name}.NOOP"})
        wait_until(
            lambda job_id=job_id: job(db, job_id)["status"] == Status.FINISHED,
            timeout=FAST,
            what=f"{name} to run",
        )


def test_a_process_is_not_woken_by_its_own_notifications(settings: Any) -> None:
    """Two Database objects stand for two processes: each hears the other, not itself."""
    heard: dict[str, list[int | None]] = {"a": [], "b": []}
    a = Database(settings.database_url)
    b = Database(settings.database_url)
    try:
        a.on_dispatchable(heard["a"].append)
        b.on_dispatchable(heard["b"].append)
        wait_until(lambda: len(listeners(a)) >= 2 and listening(a), what="both to LISTEN")
        wait_until(lambda: all(q.startswith("LISTEN") for q in listeners(a).values()))
        a.notify_dispatchable(3)
        wait_until(lambda: heard["b"] == [3], timeout=FAST, what="b to hear a")
        b.notify_dispatchable(7)  # delivered after a's own notification, if that came back
        wait_until(lambda: 7 in heard["a"], timeout=FAST, what="a to hear b")
        assert heard == {"a": [3, 7], "b": [3, 7]}
    finally:
        a.dispose()
        b.dispose()
