"""Shared test helpers: waiting on conditions (never bare sleeps) and a live server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from waitress import create_server

from app.domain.statuses import TERMINAL
from app.store import queries
from app.store.database import Database
from jobs import REGISTRY
from jobs.context import JobContext
from jobs.external import CALLBACK_BASE

T = TypeVar("T")

# Seeded into the test settings (conftest.TEST_SETTINGS): send AUTH with every API call.
ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CALLBACK_SECRET = "test-callback-secret"


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def status_of(db: Database, job_id: int) -> str:
    job = queries.get_job(db, job_id)
    assert job is not None
    return str(job["status"])


def wait_for_status(db: Database, job_id: int, *statuses: str, timeout: float = 10.0) -> str:
    return wait_until(
        lambda: (s := status_of(db, job_id)) in statuses and s,
        timeout,
        what=f"job {job_id} to reach {statuses}",
    )


def wait_for_chain(db: Database, root_id: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until every job of the chain rooted at ``root_id`` is terminal; returns the tree."""

    def done() -> dict[str, Any] | None:
        tree = queries.get_tree(db, root_id)
        assert tree is not None
        return tree if all(node["status"] in TERMINAL for node in flatten(tree)) else None

    return wait_until(done, timeout, what=f"chain {root_id} to end")


def flatten(tree: dict[str, Any]) -> list[dict[str, Any]]:
    stack, out = [tree], []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.get("next_jobs", node.get("nextJobs", [])))
    return sorted(out, key=lambda n: n["id"])


class LiveServer:
    """A real waitress server on a free loopback port, in a background thread."""

    def __init__(self, app: Any):
        self.app = app
        self.server = create_server(app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"  # type: ignore[union-attr]
        CALLBACK_BASE.listening_on(self.url)  # as `jobchain serve` does
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop waitress from inside its loop: closing the socket under a running select()
        would only end the loop at its next 1 s timeout (with EBADF), a second per test."""
        server: Any = self.server

        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()
            server._map.clear()

        if self.thread.is_alive():
            with contextlib.suppress(OSError):  # already closed: the slow path still works
                server.trigger.pull_trigger(close_all)
            self.thread.join(5)
        server.task_dispatcher.shutdown()


def job_context(job_type: str, **parameters: Any) -> JobContext:
    """A context for calling a job type's function directly, outside any worker."""
    return JobContext(
        job_id=1,
        root_id=1,
        target_object="test",
        target_id=None,
        job_type=job_type,
        parameters=parameters,
        attempt=1,
    )


def run_job_type(ctx: JobContext) -> Any:
    job = REGISTRY.get(ctx.job_type)
    assert job is not None, ctx.job_type
    return job.run(ctx)
