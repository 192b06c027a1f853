"""Worker threads: claim a job, run its type's function, report the outcome.

Dispatch is event-driven: any commit that makes a job claimable calls
:meth:`WorkerPool.wake` (through ``Database.on_dispatchable``), so an idle worker starts a
child the moment its parent's finish commits. The idle wait's timeout is only a fallback
for jobs made claimable by another process or due after a retry backoff.

A monitor thread renews each running job's lease, persists its progress and log, notices
cancel requests made by other processes, and enforces ``timeoutSeconds``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, overload

from app.store import lifecycle, queries
from app.store.database import Database, now
from config import Settings
from jobs.context import JobContext, JobFailed
from jobs.registry import Registry

log = logging.getLogger("jobchain.worker")

MAX_RESULT_BYTES = 64 * 1024
# After a timeout fires, a job's function gets this long to notice before the job is
# failed without it (its thread is then abandoned until the function returns).
TIMEOUT_GRACE_SECONDS = 5.0
MONITOR_TICK_SECONDS = 0.2


@dataclass
class Running:
    claim: lifecycle.Claim
    ctx: JobContext
    deadline: float | None
    last_beat: float = field(default_factory=time.monotonic)
    timed_out_at: float | None = None
    settled: bool = False  # finished by the monitor (timeout) or lease lost


class WorkerPool:
    """``settings.workers`` threads sharing one database and one job type registry."""

    def __init__(self, db: Database, registry: Registry, settings: Settings):
        self.db = db
        self.registry = registry
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.retry_policy = lifecycle.RetryPolicy(
            settings.retry_base_seconds, settings.retry_max_seconds
        )
        self._wakeups = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._running: dict[int, Running] = {}
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        db.on_dispatchable(self.wake)

    # -- lifecycle of the pool -------------------------------------------------------------

    def start(self) -> WorkerPool:
        for index in range(self.settings.workers):
            self._spawn(self._work_loop, f"jobchain-worker-{index}")
        self._spawn(self._monitor_loop, "jobchain-monitor")
        return self

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming and let running jobs finish for up to ``grace_seconds``.

        A job still running after that keeps its lease until it expires; the reaper then
        re-runs it (or fails it "interrupted"), exactly as after a crash.
        """
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        with self._wakeups:
            self._generation += 1
            self._wakeups.notify_all()

    def request_abort(self, job_id: int, reason: str = "cancelled") -> bool:
        """Signal a job running in this process to stop (cancel made through this API)."""
        with self._running_lock:
            running = self._running.get(job_id)
        if running is None:
            return False
        running.ctx.abort(reason)
        return True

    def running_ids(self) -> list[int]:
        with self._running_lock:
            return list(self._running)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- claiming and running ------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            generation = self._generation
            try:
                claims = lifecycle.claim(self.db, self.owner, self.settings.lease_seconds)
            except Exception:
                log.exception("claim failed; backing off")
                self._stopping.wait(1.0)
                continue
            if not claims:
                self._idle(generation)
                continue
            for claim in claims:
                self._run(claim)

    def _idle(self, generation: int) -> None:
        """Sleep until woken, until a backed-off retry is due, or the fallback poll."""
        timeout = self.settings.idle_poll_seconds
        try:
            due = queries.next_due_at(self.db)
        except Exception:
            due = None
        if due is not None:
            timeout = min(timeout, max(0.0, due - now()) + 0.001)
        with self._wakeups:
            if generation == self._generation and not self._stopping.is_set():
                self._wakeups.wait(timeout)

    def _run(self, claim: lifecycle.Claim) -> None:
        ctx = JobContext(
            job_id=claim.id,
            root_id=claim.root_id,
            target_object=claim.target_object,
            target_id=claim.target_id,
            job_type=claim.job_type,
            parameters=claim.parameters,
            attempt=claim.attempt,
            log_limit_bytes=self.settings.log_tail_bytes,
        )
        deadline = time.monotonic() + claim.timeout_seconds if claim.timeout_seconds else None
        running = Running(claim, ctx, deadline)
        with self._running_lock:
            stale = self._running.get(claim.id)
            self._running[claim.id] = running
        if stale is not None:
            # This process re-claimed a job it still runs: the old attempt's lease is gone.
            stale.settled = True
            stale.ctx.abort("lease lost")
        try:
            outcome = self._execute(running)
            if not running.settled:
                self._report(running, outcome)
        finally:
            with self._running_lock:
                if self._running.get(claim.id) is running:
                    del self._running[claim.id]
            ctx.close()

    def _execute(self, running: Running) -> lifecycle.Outcome:
        ctx = running.ctx
        job_type = self.registry.get(ctx.job_type)
        if job_type is None:
            return lifecycle.Outcome(failed=True, message=f"unknown job type {ctx.job_type!r}")
        try:
            result = job_type.run(ctx)
        except JobFailed as exc:
            return self._failure(running, exc.message, exc.result)
        except BaseException as exc:  # SystemExit too: a job must not end its worker
            ctx.output.write(traceback.format_exc())
            return self._failure(running, f"{type(exc).__name__}: {exc}", None)
        if running.timed_out_at is not None:
            return self._failure(running, "", None)
        problem = _result_problem(result)
        if problem:
            return lifecycle.Outcome(failed=True, message=problem)
        percent, message = ctx.snapshot_progress()
        return lifecycle.Outcome(failed=False, result=result, message=message, progress=percent)

    def _failure(self, running: Running, message: str, result: Any) -> lifecycle.Outcome:
        if running.timed_out_at is not None:
            message = f"timed out after {running.claim.timeout_seconds:g} s"
        if _result_problem(result):
            result = None
        return lifecycle.Outcome(failed=True, message=message, result=result)

    def _report(self, running: Running, outcome: lifecycle.Outcome) -> None:
        """Write the outcome, retrying while the database is briefly unavailable.

        If it never succeeds the lease expires and the job is re-run: at-least-once.
        """
        full = lifecycle.Outcome(
            failed=outcome.failed,
            message=_text(outcome.message),
            result=outcome.result,
            progress=outcome.progress,
            log=_text(running.ctx.output.drain()),
        )
        for attempt in range(5):
            try:
                lifecycle.finish(
                    self.db,
                    running.claim.id,
                    running.claim.lease_token,
                    full,
                    self.retry_policy,
                    self.settings.log_tail_bytes,
                )
                return
            except Exception:
                log.exception("finishing job %s failed (try %d)", running.claim.id, attempt + 1)
                self._stopping.wait(0.2 * (attempt + 1))

    # -- leases, progress, cancellation and timeouts ------------------------------------

    def _monitor_loop(self) -> None:
        while not self._stopping.wait(MONITOR_TICK_SECONDS):
            with self._running_lock:
                running = list(self._running.values())
            for job in running:
                try:
                    self._monitor(job)
                except Exception:
                    log.exception("monitoring job %s failed", job.claim.id)

    def _monitor(self, job: Running) -> None:
        if job.settled:
            return
        clock = time.monotonic()
        if job.deadline is not None and clock >= job.deadline and job.timed_out_at is None:
            job.timed_out_at = clock
            job.ctx.abort("timeout")
        if job.timed_out_at is not None and clock - job.timed_out_at >= TIMEOUT_GRACE_SECONDS:
            # The function ignores its abort flag: fail the job now; its late return is
            # fenced off by the lease token.
            job.settled = True
            self._report(job, self._failure(job, "", None))
            return
        if clock - job.last_beat < self.settings.lease_seconds / 3:
            return
        job.last_beat = clock
        percent, message = job.ctx.snapshot_progress()
        beat = lifecycle.heartbeat(
            self.db,
            job.claim.id,
            job.claim.lease_token,
            self.settings.lease_seconds,
            progress=percent,
            message=_text(message),
            log=_text(job.ctx.output.drain()),
            log_limit=self.settings.log_tail_bytes,
        )
        if not beat.still_held:
            job.settled = True
            job.ctx.abort("lease lost")
        elif beat.cancel_requested:
            job.ctx.abort("cancelled")


@overload
def _text(text: str) -> str: ...
@overload
def _text(text: str | None) -> str | None: ...
def _text(text: str | None) -> str | None:
    """Job-made text as the database takes it: PostgreSQL text cannot hold NUL."""
    return text.replace("\x00", "\ufffd") if text else text


def _result_problem(result: Any) -> str | None:
    try:
        size = len(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as exc:
        return f"job result is not JSON-serializable: {exc}"
    if size > MAX_RESULT_BYTES:
        return f"job result is {size} bytes; the limit is {MAX_RESULT_BYTES}"
    return None
