"""Counters and histograms of what happened to jobs and schedules, read from the event log.

Every status change writes a ``job_events`` row, so the log already says when a job became
ready, was claimed, ended and how: nothing in the engine has to be instrumented, and the
numbers cover every process of a deployment (they are the database's, not a process's).
A thread reads the rows added since its last look, about once a second; a scrape only
renders what was counted. Counting starts when the tail starts (as any Prometheus counter
starts at process start); ``rate()`` and ``increase()`` handle the restart.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from app.domain.read_cursor import ReadCursor
from app.domain.statuses import TERMINAL, Status, Transition
from app.store import monitoring
from app.store.database import Database, now

log = logging.getLogger("jobchain.metrics")

BATCH = 5000
# At most this many batches per look: a huge backlog is caught up over several looks.
MAX_BATCHES = 20
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
# A run ends with one of these; the outcome label says which.
RUN_ENDS = {
    Transition.FINISH.value: "finished",
    Transition.FAIL.value: "failed",
    Transition.RETRY_LATER.value: "retried",
    Transition.CANCEL.value: "cancelled",
}
RETRIES = {Transition.RETRY_LATER.value: "automatic", Transition.USER_RETRY.value: "user"}
LEASE_EXPIRIES = {Transition.RERUN.value: "rerun", Transition.INTERRUPT.value: "interrupted"}


class EventFamilies:
    """The families counted from the event log, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.ended = Counter(
            "jobchain_jobs_ended",
            "Jobs that reached an end status, by job type and status.",
            ["job_type", "status"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "jobchain_job_run_seconds",
            "Run time of an attempt, from claim to its end, by job type and outcome.",
            ["job_type", "outcome"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "jobchain_job_queue_wait_seconds",
            "Time from ready (claimable) to claimed by a worker, by job type.",
            ["job_type"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "jobchain_job_retries",
            "Retries: automatic (maxAttempts) or asked for by a user.",
            ["job_type", "kind"],
            registry=registry,
        )
        self.lease_expiries = Counter(
            "jobchain_lease_expiries",
            "Jobs whose worker vanished, found by the reaper: re-run or interrupted.",
            ["job_type", "action"],
            registry=registry,
        )
        self.join_failures = Counter(
            "jobchain_join_failed_nodes",
            "JOIN nodes ended by a join that did not succeed (failed or timed out).",
            ["job_type"],
            registry=registry,
        )
        self.fires = Counter(
            "jobchain_schedule_fires",
            "Schedule fires: started a chain, or refused (the job no longer validates).",
            ["schedule", "outcome"],
            registry=registry,
        )

    def observe_event(self, row: Any) -> None:
        """Count one ``job_events`` row (joined with its job; see monitoring.events_after)."""
        job_type, reason = row.job_type, row.reason
        if row.to_status in TERMINAL and row.from_status != row.to_status:
            self.ended.labels(job_type, row.to_status).inc()
        if row.previous_at is None:
            pass
        elif reason == Transition.CLAIM.value and row.join_id is None:
            ready = row.previous_at
            if row.run_after is not None and ready < row.run_after <= row.at:
                ready = row.run_after  # a retry's backoff is not queueing
            self.queue_wait.labels(job_type).observe(max(0.0, row.at - ready))
        elif (
            reason in RUN_ENDS
            and row.from_status == Status.PROCESSING.value
            and row.join_id is None
        ):
            seconds = max(0.0, row.at - row.previous_at)
            self.run_seconds.labels(job_type, RUN_ENDS[reason]).observe(seconds)
        if reason in RETRIES:
            self.retries.labels(job_type, RETRIES[reason]).inc()
        elif reason in LEASE_EXPIRIES:
            self.lease_expiries.labels(job_type, LEASE_EXPIRIES[reason]).inc()
        elif reason == Transition.JOIN_FAILED.value:
            self.join_failures.labels(job_type).inc()

    def observe_fire(self, row: Any) -> None:
        outcome = "started" if row.root_job_id is not None else "refused"
        self.fires.labels(row.schedule, outcome).inc()


class EventTail:
    """Reads new event and fire rows into :class:`EventFamilies`, on a thread or by hand."""

    def __init__(
        self,
        db: Database,
        registry: CollectorRegistry | None,
        interval: float = 1.0,
        may_run: Callable[[], bool] = lambda: True,
    ):
        self.db = db
        self.families = EventFamilies(registry)
        self.interval = interval
        # Asked before each look: in multiprocess mode only one process of a node tails.
        self.may_run = may_run
        self._events: ReadCursor | None = None
        self._fires: ReadCursor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> EventTail:
        if self.may_run():
            self.poll()  # places the cursors: counting starts now
        # The thread holds the tail weakly: once its app is gone, the thread ends.
        self._thread = threading.Thread(
            target=_run,
            args=(weakref.ref(self), self.interval, self._stop),
            name="jobchain-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def poll(self) -> int:
        """Count every row added since the last call; returns how many were read."""
        with self._lock, self.db.read() as conn:
            if self._events is None or self._fires is None:
                self._events = ReadCursor(monitoring.last_event_id(conn))
                self._fires = ReadCursor(monitoring.last_fire_id(conn))
                return 0
            read = 0
            for _ in range(MAX_BATCHES):
                rows = monitoring.events_after(
                    conn, self._events.last_id, BATCH, self._events.wanted()
                )
                for row in rows:
                    self.families.observe_event(row)
                self._events.advance((r.id for r in rows), now())
                read += len(rows)
                if len(rows) < BATCH:
                    break
            fires = monitoring.fires_after(conn, self._fires.last_id, BATCH, self._fires.wanted())
            for fire in fires:
                self.families.observe_fire(fire)
            self._fires.advance((f.id for f in fires), now())
            return read + len(fires)


def _run(ref: weakref.ReferenceType[EventTail], interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        tail = ref()
        if tail is None:
            return
        try:
            if tail.may_run():
                tail.poll()
        except Exception:  # the database may be away for a while: try again later
            log.warning("metrics: reading the event log failed", exc_info=True)
        del tail
