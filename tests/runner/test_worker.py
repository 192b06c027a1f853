"""Workers running real jobs, on SQLite and PostgreSQL: cancel, timeouts, failures,
automatic retries, progress and log, and event-driven dispatch."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import update

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import actions, queries, recovery
from app.store.database import Database
from app.store.tables import jobs
from jobs import REGISTRY, JobContext, JobFailed
from jobs.context import MAX_RESULT_BYTES
from jobs.registry import JobFunction
from tests.helpers import flatten, wait_for_chain, wait_for_status, wait_until
from tests.runner.test_engine_chain import submit

Register = Callable[[str, JobFunction], str]


@pytest.fixture
def job_types() -> Iterator[Register]:
    """Register temporary job types under unique names; they are removed afterwards."""
    added: list[str] = []

    def register(prefix: str, run: JobFunction) -> str:
        name = f"TEST_{prefix}_{uuid.uuid4().hex[:8]}"
        REGISTRY.register(name, run, f"test job type {prefix}")
        added.append(name)
        return name

    yield register
    with REGISTRY._lock:
        for name in added:
            REGISTRY._types.pop(name, None)


def job(db: Database, job_id: int) -> dict[str, Any]:
    row = queries.get_job(db, job_id)
    assert row is not None
    return row


def log_text(db: Database, job_id: int) -> str:
    log = queries.get_log(db, job_id)
    assert log is not None
    return str(log["text"])


def reasons(db: Database, job_id: int) -> list[str]:
    events = queries.get_events(db, job_id)
    assert events is not None
    return [e["reason"] for e in events]


def workers_alive(pool: WorkerPool) -> bool:
    return all(thread.is_alive() for thread in pool._threads)


def nested_chain(targets: list[str], **extra: Any) -> dict[str, Any]:
    """``["a", "b", "c"]`` -> a whose next job is b whose next job is c."""
    payload: dict[str, Any] = {"targetObject": targets[-1], **extra}
    for target in reversed(targets[:-1]):
        payload = {"targetObject": target, "nextJobs": [payload], **extra}
    return payload


@pytest.fixture
def slow_poll_pool(runtime: Runtime) -> Iterator[WorkerPool]:
    """Workers whose idle fallback poll is far longer than any test: only wake-ups work."""
    settings = replace(runtime.settings, idle_poll_seconds=60.0)
    workers = WorkerPool(runtime.db, runtime.registry, settings).start()
    yield workers
    workers.stop(grace_seconds=5)


# -- cancellation and timeouts -------------------------------------------------------------


@pytest.mark.parametrize("via", ["heartbeat", "request_abort"])
def test_running_sleep_cancelled_ends_cancelled_quickly(
    db: Database, pool: WorkerPool, via: str
) -> None:
    root = submit(
        db,
        {
            "targetObject": "1.SLEEP",
            "parameters": {"seconds": 60},
            "nextJobs": [{"targetObject": "2.NOOP"}],
        },
    )
    wait_for_status(db, root, "PROCESSING")
    started = time.monotonic()
    assert actions.cancel(db, root) == "PROCESSING"
    if via == "request_abort":
        # What the API does when this process runs the job: no heartbeat round trip.
        assert pool.request_abort(root)
    wait_for_status(db, root, "CANCELLED", timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < (2.0 if via == "request_abort" else 5.0)
    tree = wait_for_chain(db, root)
    assert [n["status"] for n in flatten(tree)] == ["CANCELLED", "CANCELLED"]
    assert job(db, root)["message"] == "cancelled while running"
    wait_until(lambda: pool.running_ids() == [], what="the worker to let go of the job")


def test_timeout_fails_a_sleep_with_timed_out_message(db: Database, pool: WorkerPool) -> None:
    started = time.monotonic()
    root = submit(
        db,
        {
            "targetObject": "1.SLEEP",
            "parameters": {"seconds": 60},
            "timeoutSeconds": 0.3,
            "nextJobs": [
                {"targetObject": "2.NOOP"},
                {"targetObject": "3.NOOP", "executeOnError": True},
            ],
        },
    )
    tree = wait_for_chain(db, root, timeout=10)
    assert time.monotonic() - started < 5
    by_target = {n["target_object"]: n for n in flatten(tree)}
    assert by_target["1.SLEEP"]["status"] == "FAILED"
    assert by_target["1.SLEEP"]["message"] == "timed out after 0.3 s"
    assert by_target["2.NOOP"]["status"] == "SKIPPED"
    assert by_target["3.NOOP"]["status"] == "FINISHED"


def test_timeout_counts_as_a_failed_attempt_and_is_retried(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def slow_first(ctx: JobContext) -> Any:
        if ctx.attempt == 1:
            ctx.wait(60)
        return {"attempt": ctx.attempt}

    name = job_types("SLOWFIRST", slow_first)
    root = submit(db, {"targetObject": name, "timeoutSeconds": 0.3, "maxAttempts": 2})
    wait_for_status(db, root, "FINISHED", timeout=10)
    row = job(db, root)
    assert (row["attempt"], row["result"]) == (2, {"attempt": 2})
    assert "automatic retry" in reasons(db, root)


# -- failing job functions ----------------------------------------------------------------


def test_job_raising_an_exception_fails_with_message_and_traceback(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def explode(ctx: JobContext) -> Any:
        ctx.logger.info("about to explode")
        raise ValueError(f"kaputt {ctx.target_id}")

    name = job_types("BOOM", explode)
    # More failing jobs than workers: every worker must survive its failure.
    roots = [
        submit(
            db,
            {
                "targetObject": f"{i}.{name}",
                "nextJobs": [{"targetObject": "NOOP", "executeOnError": True}],
            },
        )
        for i in range(2 * pool.settings.workers)
    ]
    for i, root in enumerate(roots):
        tree = wait_for_chain(db, root)
        assert [n["status"] for n in flatten(tree)] == ["FAILED", "FINISHED"]
        assert tree["message"] == f"ValueError: kaputt {i}"
        text = log_text(db, root)
        assert "about to explode" in text
        assert "Traceback (most recent call last)" in text
        assert f"ValueError: kaputt {i}" in text
    assert workers_alive(pool)
    after = submit(db, {"targetObject": "NOOP"})
    wait_for_status(db, after, "FINISHED")


def test_job_calling_sys_exit_fails_and_the_worker_survives(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def leave(ctx: JobContext) -> Any:
        raise SystemExit(3)

    name = job_types("EXIT", leave)
    roots = [submit(db, {"targetObject": name}) for _ in range(2 * pool.settings.workers)]
    for root in roots:
        wait_for_status(db, root, "FAILED", timeout=10)
        assert job(db, root)["message"] == "SystemExit: 3"
    assert workers_alive(pool)
    after = submit(db, {"targetObject": "NOOP"})
    wait_for_status(db, after, "FINISHED")


def test_job_failed_keeps_its_clean_message_and_result(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def refuse(ctx: JobContext) -> Any:
        raise JobFailed("price list broken", result={"line": 7})

    name = job_types("REFUSE", refuse)
    root = submit(db, {"targetObject": name})
    wait_for_status(db, root, "FAILED")
    row = job(db, root)
    assert (row["message"], row["result"]) == ("price list broken", {"line": 7})
    assert "Traceback" not in log_text(db, root)


UNUSABLE_RESULTS = {
    "object": ({"when": object()}, "job result is not JSON-serializable"),
    "set": ({1, 2, 3}, "job result is not JSON-serializable"),
    "nan": ({"ratio": math.nan}, "job result is not JSON-serializable"),
    "infinity": ({"ratio": -math.inf}, "job result is not JSON-serializable"),
    "too-large": ("x" * (MAX_RESULT_BYTES + 1), "bytes; the limit is"),
}


def test_unusable_results_fail_the_job_cleanly(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def unusable(ctx: JobContext) -> Any:
        assert ctx.target_id is not None
        return UNUSABLE_RESULTS[ctx.target_id][0]

    name = job_types("BADRESULT", unusable)
    roots = {
        kind: submit(
            db,
            {
                "targetObject": f"{kind}.{name}",
                "nextJobs": [{"targetObject": "NOOP", "executeOnError": True}],
            },
        )
        for kind in UNUSABLE_RESULTS
    }
    for kind, root in roots.items():
        tree = wait_for_chain(db, root)
        assert [n["status"] for n in flatten(tree)] == ["FAILED", "FINISHED"], kind
        assert UNUSABLE_RESULTS[kind][1] in tree["message"], kind
        assert tree["result"] is None
    assert workers_alive(pool)


def test_max_attempts_retries_until_success(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    def flaky(ctx: JobContext) -> Any:
        if ctx.attempt < 3:
            raise JobFailed(f"flake {ctx.attempt}")
        return {"attempt": ctx.attempt}

    name = job_types("FLAKY", flaky)
    root = submit(
        db, {"targetObject": name, "maxAttempts": 3, "nextJobs": [{"targetObject": "NOOP"}]}
    )
    tree = wait_for_chain(db, root, timeout=15)
    assert [n["status"] for n in flatten(tree)] == ["FINISHED", "FINISHED"]
    assert (tree["attempt"], tree["result"]) == (3, {"attempt": 3})
    assert reasons(db, root) == [
        "submit",
        "claim",
        "automatic retry",
        "claim",
        "automatic retry",
        "claim",
        "finish",
    ]
    events = queries.get_events(db, root)
    assert events is not None
    assert [e["attempt"] for e in events if e["reason"] == "claim"] == [1, 2, 3]


# -- progress, log, leases ------------------------------------------------------------------


def test_progress_and_log_are_persisted_while_running(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    release = threading.Event()

    def report(ctx: JobContext) -> Any:
        ctx.progress(50, "halfway")
        ctx.logger.info("working on it")
        release.wait(10)
        ctx.logger.info("wrapping up")
        ctx.progress(100, "done")
        return {"ok": True}

    name = job_types("REPORT", report)
    root = submit(db, {"targetObject": name})
    try:
        wait_until(
            lambda: (
                job(db, root)["progress"] == 50
                and job(db, root)["message"] == "halfway"
                and "working on it" in log_text(db, root)
            ),
            timeout=10,
            what="the heartbeat to persist progress and log",
        )
        assert job(db, root)["status"] == "PROCESSING"
    finally:
        release.set()
    wait_for_status(db, root, "FINISHED")
    row = job(db, root)
    assert (row["progress"], row["message"], row["result"]) == (100, "done", {"ok": True})
    lines = queries.get_log(db, root)
    assert lines is not None
    assert [line.split(" ", 3)[-1] for line in lines["lines"]] == [
        "working on it",
        "wrapping up",
    ]


def test_a_worker_that_lost_its_lease_is_fenced_off(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    """The first attempt's lease is taken away (as if its worker had stalled); its late
    result must not overwrite the second attempt's."""
    first_started = threading.Event()
    first_returned = threading.Event()

    def stubborn(ctx: JobContext) -> Any:
        if ctx.attempt == 1:
            first_started.set()
            ctx.wait(30)  # returns once the lost lease is noticed
            first_returned.set()
            return {"attempt": 1}
        return {"attempt": ctx.attempt}

    name = job_types("STUBBORN", stubborn)
    root = submit(db, {"targetObject": name, "maxAttempts": 2})
    assert first_started.wait(10)
    db.write(
        lambda conn: conn.execute(update(jobs).where(jobs.c.id == root).values(lease_expires_at=0))
    )
    assert recovery.reap_expired_leases(db) == 1
    wait_for_status(db, root, "FINISHED", timeout=10)
    # The stale attempt was told to stop (not left running for its full 30 s).
    assert first_returned.wait(5)
    wait_until(lambda: pool.running_ids() == [], what="the stale attempt to let go")
    row = job(db, root)
    assert (row["attempt"], row["result"]) == (2, {"attempt": 2})
    assert reasons(db, root) == ["submit", "claim", "lease expired, re-run", "claim", "finish"]


# -- event-driven dispatch ------------------------------------------------------------------


def test_deep_chain_hops_do_not_wait_for_the_idle_poll(db: Database, pool: WorkerPool) -> None:
    started = time.monotonic()
    root = submit(db, nested_chain([f"{i}.NOOP" for i in range(20)]))
    tree = wait_for_chain(db, root, timeout=20)
    elapsed = time.monotonic() - started
    nodes = flatten(tree)
    assert len(nodes) == 20 and {n["status"] for n in nodes} == {"FINISHED"}
    assert elapsed < 5.0, f"20 hops took {elapsed:.2f} s"


def test_idle_workers_are_woken_by_submit_release_and_retry(
    db: Database, slow_poll_pool: WorkerPool, job_types: Register
) -> None:
    """With a 60 s fallback poll, only wake-ups can make this finish in seconds."""

    def fail_first(ctx: JobContext) -> Any:
        if ctx.attempt == 1:
            raise JobFailed("first attempt fails")
        return None

    name = job_types("FAILFIRST", fail_first)
    started = time.monotonic()
    # Fan-out: the root's finish must wake the other idle workers for its four children.
    root = submit(
        db,
        {
            "targetObject": "NOOP",
            "nextJobs": [
                {"targetObject": f"{i}.SLEEP", "parameters": {"seconds": 1.0}} for i in range(4)
            ],
        },
    )
    tree = wait_for_chain(db, root, timeout=10)
    assert {n["status"] for n in flatten(tree)} == {"FINISHED"}
    children = tree["next_jobs"]
    # They ran side by side on four workers, not one after another.
    assert max(c["started_at"] for c in children) < min(c["finished_at"] for c in children)
    # A user retry wakes them too.
    failing = submit(db, {"targetObject": name})
    wait_for_status(db, failing, "FAILED")
    actions.retry(db, failing)
    wait_for_status(db, failing, "FINISHED", timeout=10)
    assert time.monotonic() - started < 8.0


def test_nul_characters_in_job_text_do_not_wedge_the_job(
    db: Database, pool: WorkerPool, job_types: Register
) -> None:
    """PostgreSQL text cannot hold NUL; job-made text must still reach the database."""

    def nul_fail(ctx: JobContext) -> Any:
        ctx.logger.info("before\x00after")
        raise RuntimeError("bad\x00byte")

    def nul_ok(ctx: JobContext) -> Any:
        ctx.progress(10, "step\x00one")
        return {"text": "a\x00b"}

    failing = submit(db, {"targetObject": job_types("NULFAIL", nul_fail)})
    passing = submit(db, {"targetObject": job_types("NULOK", nul_ok)})
    wait_for_status(db, failing, "FAILED", timeout=10)
    assert job(db, failing)["message"] == "RuntimeError: bad\ufffdbyte"
    assert "before\ufffdafter" in log_text(db, failing)
    wait_for_status(db, passing, "FINISHED", timeout=10)
    row = job(db, passing)
    assert (row["message"], row["result"]) == ("step\ufffdone", {"text": "a\x00b"})
