"""The reconciliation loop of ``jobchain serve`` and ``jobchain worker``: at each tick it
observes the sources whose observation is due, then ticks every model
(``app/store/automation.py``: once per model and slot, whatever the number of processes).

Ticks are aligned to multiples of ``automation_tick_seconds``, so processes tick the same
slots and all but one find the slot done.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial

from sqlalchemy import select

from app.runner import observers
from app.services.runs import RunService
from app.store import automation
from app.store.database import Database
from app.store.tables import models

log = logging.getLogger("jobchain.automation")

# Ticks run as an admin would start the run (assets' jobs are an admin's to declare).
TICK_ROLE = "admin"


class AutomationLoop:
    def __init__(self, runs: RunService, clock: Callable[[], float] = time.time) -> None:
        self._runs = runs
        self._db: Database = runs.db
        self._clock = clock
        settings = runs.settings
        self._tick = automation.TickSettings(
            settings.automation_tick_seconds,
            settings.automation_max_failures,
            f"{socket.gethostname()}:{os.getpid()}",
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobchain-automation", daemon=True)

    def start(self) -> AutomationLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self, at: float | None = None) -> list[automation.TickResult]:
        """Observe due sources, then tick every model at ``at`` (default: now)."""
        at = self._clock() if at is None else at
        try:
            observers.observe_due(self._db, at)
        except Exception:  # an observer's trouble must not stop the ticks
            log.exception("observing sources failed")
        build = self._runs.builder(TICK_ROLE)
        with self._db.read() as conn:
            model_ids = list(conn.execute(select(models.c.id).order_by(models.c.id)).scalars())
        done: list[automation.TickResult] = []
        for model_id in model_ids:
            try:
                if not automation.pending(self._db, model_id, at, self._tick.tick_seconds):
                    continue
                result = self._db.write(
                    partial(
                        automation.tick_model,
                        model_id=model_id,
                        at=at,
                        settings=self._tick,
                        build=build,
                    )
                )
            except Exception:  # one broken model must not stop the others
                log.exception("model %d: automation tick failed", model_id)
                continue
            if result is not None:
                done.append(result)
                if result.requested:
                    log.info(
                        "model %d: tick %d requested %s (run %s)",
                        model_id,
                        result.tick_id,
                        ", ".join(result.requested),
                        result.run_id,
                    )
        if any(r.run_id is not None for r in done):
            self._db.notify_dispatchable()
        return done

    def _run(self) -> None:
        period = self._tick.tick_seconds
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # e.g. the database is unreachable: the next tick tries again
                log.exception("automation tick failed")
            now = self._clock()
            self._stopping.wait(period - (now % period))
