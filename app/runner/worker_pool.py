"""Worker threads: claim a job, run its type's function, report the outcome.

Dispatch is event-driven: any commit that makes a job claimable calls
:meth:`WorkerPool.wake` (through ``Database.on_dispatchable``), so an idle worker starts a
child the moment its parent's finish commits. The idle wait's timeout is only a fallback
for jobs made claimable by another process or due after a retry backoff.

A monitor thread renews each running job's lease, persists its progress and log, notices
cancel requests made by other processes, and enforces ``timeoutSeconds``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any, overload

from app.domain.outcome import RetryPolicy
from app.failpoints import failpoint
from app.runner.lane import Lane, Running
from app.store import claims, completion, external, recovery, start_checks, warm
from app.store.callback_deadline import callback_timeout
from app.store.database import Database, now
from config import Settings
from jobs.context import JobContext, JobFailed, result_problem
from jobs.external import AwaitCallback
from jobs.registry import Registry

log = logging.getLogger("jobchain.worker")

# After a timeout fires, a job's function gets this long to notice before the job is
# failed without it (its thread is then abandoned until the function returns).
TIMEOUT_GRACE_SECONDS = 5.0
MONITOR_TICK_SECONDS = 0.02
# A worker whose jobs end this fast takes several per transaction (up to MAX_BATCH) and
# records their outcomes together; one slower job sets it back to one at a time.
QUICK_SECONDS = 0.005
MAX_BATCH = 16
# A job running this long hands back the jobs its worker claimed but has not started, and
# records the ones it finished, so nothing waits behind a slow job.
SLOW_SECONDS = 0.05
# A worker loop that failed unexpectedly (the database gone for longer than its wait)
# pauses this long before it goes on.
ERROR_BACKOFF_SECONDS = 1.0


class WorkerPool:
    """``settings.workers`` threads sharing one database and one job type registry."""

    def __init__(self, db: Database, registry: Registry, settings: Settings):
        self.db = db
        self.registry = registry
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.retry_policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)
        self._wakeups = threading.Condition()
        self._generation = 0
        self._next_due: float | None = None  # earliest retry backoff this process set
        self._stopping = threading.Event()
        self._running: dict[int, Running] = {}
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        db.on_dispatchable(self.wake)

    # -- lifecycle of the pool -------------------------------------------------------------

    def start(self) -> WorkerPool:
        warm.warm_up(self.db)  # the first join does not compile its statements
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

    def wake(self, count: int | None = None) -> None:
        """Wake ``count`` idle workers (all when None): one per job made claimable."""
        with self._wakeups:
            self._generation += 1
            if count is None:
                self._wakeups.notify_all()
            else:
                self._wakeups.notify(count)

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
        lane = Lane(start_checks=start_checks.StartChecks(self.db))
        try:
            while not self._stopping.is_set():
                try:
                    self._work_step(lane)
                except Exception:  # e.g. the database stayed unreachable: back off, carry on
                    log.exception("worker loop failed; going on in %g s", ERROR_BACKOFF_SECONDS)
                    self._stopping.wait(ERROR_BACKOFF_SECONDS)
            self._hand_back(lane)
        finally:
            if lane.start_checks is not None:
                lane.start_checks.close()

    def _work_step(self, lane: Lane) -> None:
        claim = lane.take()
        if claim is None:
            generation = self._generation
            if not self._flush(lane, claim_limit=lane.batch):
                self._idle(generation)
            return
        waited = claim.id != lane.first_of_batch
        lane.first_of_batch = None
        began = time.monotonic()
        if waited and not lane.may_start(self.db, claim):
            # Cancelled (or its lease lost) while it waited: it never starts.
            with lane.lock:
                lane.done.append(
                    completion.Done(
                        claim.id, claim.lease_token, completion.Outcome(False, started=False)
                    )
                )
            return
        self._run(claim, lane)
        quick = time.monotonic() - began < QUICK_SECONDS
        lane.batch = min(lane.batch * 2, MAX_BATCH) if quick else 1
        if claim.joins_below:
            # A join waits for this job's end: record it now, not with the rest of its
            # batch (its JOIN nodes arrive in the same commit); claim more if none wait.
            with lane.lock:
                more = 0 if lane.held else lane.batch
            self._flush(lane, claim_limit=more)
        elif not quick or len(lane.done) >= MAX_BATCH or lane.endings:
            self._flush(lane, claim_limit=0)

    def _flush(self, lane: Lane, claim_limit: int) -> bool:
        """Record the lane's finished jobs and claim up to ``claim_limit`` more, in one
        transaction; True if it claimed any. Retries while the database is unavailable;
        if it never answers, the leases expire and the jobs re-run (at-least-once)."""
        with lane.lock:
            done, lane.done = lane.done, []
            # JOIN nodes of joins this lane's last commit decided end in this one.
            endings, lane.endings = lane.endings, []
        if not done and not claim_limit and not endings:
            return False
        token = str(uuid.uuid4())  # one fencing token for every try of this flush
        recorded: completion.Completion | None = None
        for attempt in range(5):
            try:
                recorded = completion.record_and_claim(
                    self.db,
                    done,
                    owner=self.owner,
                    claim_limit=0 if self._stopping.is_set() else claim_limit,
                    lease_seconds=self.settings.lease_seconds,
                    retry=self.retry_policy,
                    log_limit=self.settings.log_tail_bytes,
                    claim_token=token,
                    again=attempt > 0,
                    end_first=endings,
                    defer_endings=True,
                )
                break
            except Exception:
                log.exception("recording %d job(s) failed (try %d)", len(done), attempt + 1)
                if self._stopping.wait(0.2 * (attempt + 1)):
                    break
        if recorded is None:  # a later flush ends them (else their leases expire)
            with lane.lock:
                lane.endings = endings + lane.endings
            return False
        if recorded.retry_at is not None:
            due = self._next_due
            self._next_due = recorded.retry_at if due is None else min(due, recorded.retry_at)
        with lane.lock:
            lane.endings.extend(recorded.decided)
            lane.held.extend(recorded.claims)
            if recorded.claims:
                lane.first_of_batch = recorded.claims[0].id
        return bool(recorded.claims)

    def _hand_back(self, lane: Lane) -> None:
        """Record what the lane finished and return what it never started."""
        held, done = lane.drain()
        if done or lane.endings:
            with lane.lock:
                lane.done = done + lane.done
            self._flush(lane, claim_limit=0)
        if held:
            try:
                recovery.release_unstarted(self.db, held)
            except Exception:  # their leases expire and the reaper hands them back
                log.exception("handing back %d unstarted job(s) failed", len(held))

    def _idle(self, generation: int) -> None:
        """Sleep until woken, until a backed-off retry is due, or the fallback poll."""
        timeout = self.settings.idle_poll_seconds
        due = self._next_due
        if due is not None:
            wait = due - now()
            if wait <= 0:
                self._next_due = None  # due now: the claim that follows takes it
            timeout = min(timeout, max(0.001, wait))
        with self._wakeups:
            if generation == self._generation and not self._stopping.is_set():
                self._wakeups.wait(timeout)

    def _run(self, claim: claims.Claim, lane: Lane) -> None:
        failpoint("after_claim")  # claimed (committed), not started
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
        running = Running(claim, ctx, deadline, lane)
        with self._running_lock:
            stale = self._running.get(claim.id)
            self._running[claim.id] = running
        if stale is not None:
            # This process re-claimed a job it still runs: the old attempt's lease is gone.
            stale.settled = True
            stale.ctx.abort("lease lost")
        try:
            outcome = self._execute(running)
            failpoint("mid_job")  # the function ran; its outcome is not recorded yet
            if not running.settled:
                with lane.lock:
                    lane.done.append(self._done(running, outcome))
        finally:
            with self._running_lock:
                if self._running.get(claim.id) is running:
                    del self._running[claim.id]
            ctx.close()

    def _execute(self, running: Running) -> completion.Outcome:
        ctx = running.ctx
        job_type = self.registry.get(ctx.job_type)
        running.started_at = now()  # the function's real start (it may have waited)
        if job_type is None:
            running.finished_at = running.started_at
            return completion.Outcome(failed=True, message=f"unknown job type {ctx.job_type!r}")
        try:
            result = job_type.run(ctx)
        except JobFailed as exc:
            return self._failure(running, exc.message, exc.result)
        except BaseException as exc:  # SystemExit too: a job must not end its worker
            ctx.output.write(traceback.format_exc())
            return self._failure(running, f"{type(exc).__name__}: {exc}", None)
        finally:
            running.finished_at = now()
        if running.timed_out_at is not None:
            return self._failure(running, "", None)
        if isinstance(result, AwaitCallback):
            return self._await_callback(running)
        problem = result_problem(result)
        if problem:
            return completion.Outcome(failed=True, message=problem)
        percent, message = ctx.snapshot_progress()
        return completion.Outcome(failed=False, result=result, message=message, progress=percent)

    def _failure(self, running: Running, message: str, result: Any) -> completion.Outcome:
        if running.timed_out_at is not None:
            message = f"timed out after {running.claim.timeout_seconds:g} s"
        if result_problem(result):
            result = None
        return completion.Outcome(failed=True, message=message, result=result)

    def _await_callback(self, running: Running) -> completion.Outcome:
        """EXTERNAL: hand the job to its callback deadline, so no thread waits for it.

        Nothing is left to report afterwards. If the hand-over fails, the worker's lease
        expires and the reaper re-runs the job (or fails it), as after a crash.
        """
        running.settled = True
        claim = running.claim
        try:
            external.await_callback(
                self.db,
                claim.id,
                claim.lease_token,
                callback_timeout(claim.parameters),
                message=_text(running.ctx.snapshot_progress()[1]),
                log=_text(running.ctx.output.drain()),
                log_limit=self.settings.log_tail_bytes,
                started_at=running.started_at,
            )
        except Exception:
            log.exception("handing job %s to its callback failed", claim.id)
        return completion.Outcome(failed=False)

    def _done(self, running: Running, outcome: completion.Outcome) -> completion.Done:
        full = completion.Outcome(
            failed=outcome.failed,
            message=_text(outcome.message),
            result=outcome.result,
            progress=outcome.progress,
            log=_text(running.ctx.output.drain()),
            started_at=running.started_at,
            # None: a timed-out function still running, failed now without it.
            finished_at=running.finished_at or now(),
        )
        claim = running.claim
        return completion.Done(claim.id, claim.lease_token, full, claim.joins_below)

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
        if not job.handed_back and clock - job.started >= SLOW_SECONDS:
            job.handed_back = True
            self._hand_back(job.lane)
            job.last_beat = -self.settings.lease_seconds  # beat now: store its start
        if job.deadline is not None and clock >= job.deadline and job.timed_out_at is None:
            job.timed_out_at = clock
            job.ctx.abort("timeout")
        if job.timed_out_at is not None and clock - job.timed_out_at >= TIMEOUT_GRACE_SECONDS:
            # The function ignores its abort flag: fail the job now; its late return is
            # fenced off by the lease token.
            job.settled = True
            with job.lane.lock:
                job.lane.done.append(self._done(job, self._failure(job, "", None)))
            self._flush(job.lane, claim_limit=0)
            return
        if clock - job.last_beat < self.settings.lease_seconds / 3:
            return
        job.last_beat = clock
        percent, message = job.ctx.snapshot_progress()
        beat = claims.heartbeat(
            self.db,
            job.claim.id,
            job.claim.lease_token,
            self.settings.lease_seconds,
            progress=percent,
            message=_text(message),
            log=_text(job.ctx.output.drain()),
            log_limit=self.settings.log_tail_bytes,
            started_at=job.started_at,
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
