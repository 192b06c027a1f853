"""What runs jobs in a process: worker threads, housekeeping and the schedule loop.

``jobchain serve`` runs them beside the API; ``jobchain worker`` runs them alone. Both start
and stop them the same way, so a worker process behaves exactly like the embedded one.
"""

from __future__ import annotations

import logging

from app.alerts.dispatcher import Dispatcher
from app.runner.automation_loop import AutomationLoop
from app.runner.housekeeping import Timers, start_housekeeping
from app.runner.schedule_loop import ScheduleLoop
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.services.runs import RunService

log = logging.getLogger("jobchain.background")


class Background:
    """Worker pool, housekeeping and schedules of one process, started and stopped together."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool = WorkerPool(runtime.db, runtime.registry, runtime.settings)
        runtime.pool = self.pool
        self.schedule_loop = ScheduleLoop(runtime.db, runtime.registry, runtime.settings)
        self.automation = AutomationLoop(RunService.for_runtime(runtime))
        self._scheduler: Timers | None = None
        # Alerts: matched and sent on a thread of their own, never a worker's.
        self.alerts = Dispatcher(runtime.db, runtime.settings)

    def start(self) -> Background:
        settings = self.runtime.settings
        self._scheduler = start_housekeeping(
            self.runtime.db,
            settings.reap_interval_seconds,
            settings.idempotency_ttl_seconds,
            settings.retention_days,
        )
        self.pool.start()
        self.schedule_loop.start()  # its first check fires what came due while we were down
        self.automation.start()
        self.alerts.start()
        return self

    def stop(self, grace_seconds: float) -> None:
        """Stop claiming; running jobs get ``grace_seconds`` to finish, unstarted ones go back."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.schedule_loop.stop()
        self.automation.stop()
        self.alerts.stop()
        self.pool.stop(grace_seconds)
