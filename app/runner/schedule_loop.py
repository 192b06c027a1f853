"""The loop in ``jobchain serve`` and ``jobchain worker`` that fires due schedules.

When a cron expression fires is :mod:`app.domain.cron`; this module stores each fire and
starts its chain through the submit service, guarded in the database so any number of
processes may run the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from app.domain.cron import InvalidSchedule, cron_schedule
from app.runner import model_cron
from app.services.runs import RunService
from app.services.submit import SubmitService
from app.store import model_fires, schedules
from app.store.database import Database
from app.store.database import now as current_time
from config import Settings
from jobs.registry import Registry

log = logging.getLogger("jobchain.scheduling")

# How often the loop looks for schedules changed by other processes.
CHECK_SECONDS = 5.0
# Never sleep less than this between checks (a timer may wake a little early).
MIN_SLEEP = 0.01
# Only admins create or change schedules (app/security/roles.py): a fire submits as one.
FIRE_ROLE = "admin"


# -- firing --------------------------------------------------------------------------------


def next_fire_after(at: float) -> schedules.NextFire:
    """The store's ``next_fire``: the first fire time of (cron, zone) after ``at``."""

    def next_fire(cron: str, timezone: str) -> float | None:
        try:
            return cron_schedule(cron, timezone).next_after(at)
        except InvalidSchedule as exc:  # stored valid; e.g. a zone gone from tzdata
            log.error("schedule timing %r %r no longer valid: %s", cron, timezone, exc.details)
            return None

    return next_fire


def fire_due(
    db: Database, registry: Registry, settings: Settings, now: float | None = None
) -> list[schedules.Fire]:
    """Fire every enabled schedule whose next fire time is at or before ``now``.

    Each fires once however many of its fire times passed (coalescing: a service that
    was down for ten minutes starts one chain for an every-minute schedule, not ten), and
    its next fire time moves to the first one after ``now``. Safe to run in many processes.
    The job goes through the submit service as any submission does (app/services/submit.py);
    the fire stores it in the transaction that records the fire.
    """
    at = current_time() if now is None else now
    next_fire = next_fire_after(at)
    service = SubmitService(db, registry, settings)
    fired: list[schedules.Fire] = []
    for schedule_id, fire_time in schedules.due(db, at):
        try:
            done = schedules.fire(
                db,
                schedule_id,
                fire_time,
                at,
                next_fire,
                lambda payload: service.prepare(payload, FIRE_ROLE),
            )
        except Exception:  # one broken schedule must not stop the others
            log.exception("schedule %d: fire at %s failed", schedule_id, _iso(fire_time))
            continue
        if done is None:
            continue
        fired.append(done)
        if done.root_job_id is None:
            log.error("schedule %d: fire at %s: %s", schedule_id, _iso(fire_time), done.message)
        else:
            log.info(
                "schedule %d: fire at %s started chain %d",
                schedule_id,
                _iso(fire_time),
                done.root_job_id,
            )
    if any(f.root_job_id is not None for f in fired):
        db.notify_dispatchable()
    return fired


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class ScheduleLoop:
    """Fires due schedules from a background thread of ``jobchain serve``.

    It sleeps until the earliest next fire time, at most ``check_seconds`` (schedules made
    by other processes), and wakes at once when a schedule changes through this process.
    Its first check runs at start, so fires missed while the service was down run then,
    once each. Any number of processes may run one: every fire is guarded in the database.
    """

    def __init__(
        self,
        db: Database,
        registry: Registry,
        settings: Settings,
        clock: Callable[[], float] = current_time,
        check_seconds: float = CHECK_SECONDS,
    ):
        self._db = db
        self._registry = registry
        self._settings = settings
        self._clock = clock
        self._check_seconds = check_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobchain-schedules", daemon=True)
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> ScheduleLoop:
        self._unsubscribe = schedules.on_change(self._db, self.wake)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Check now (a schedule changed, or a test moved the clock)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> float:
        """Fire what is due (schedules and the assets' cron); returns the seconds to sleep
        before the next check."""
        at = self._clock()
        fire_due(self._db, self._registry, self._settings, now=at)
        runs = RunService(self._db, self._registry, self._settings)
        model_cron.fire_due(runs, at, next_fire_after(at))
        found = [schedules.earliest_fire(self._db), model_fires.earliest_fire(self._db)]
        earliest = min((t for t in found if t is not None), default=None)
        if earliest is None or earliest <= at:  # still due after a pass: its fire failed
            return self._check_seconds
        return min(self._check_seconds, max(MIN_SLEEP, earliest - self._clock()))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self.run_once()
            except Exception:  # e.g. the database is unreachable: try again later
                log.exception("schedule check failed")
                delay = self._check_seconds
            self._wake.wait(delay)
            self._wake.clear()
