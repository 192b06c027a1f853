"""The background thread that matches events and sends notifications, in every process
that runs jobs (``jobchain serve``, ``jobchain worker``).

It never runs on a worker's thread and holds no lock while it sends: a receiver that is
slow or down costs this thread time, never a job. Each pass records the deliveries new
events owe, claims the ones due (any process's), sends them a few at a time and records
each attempt: delivered, retried after ``base * 2 ** (n - 1)`` seconds (capped), or failed
for good after ``notify_max_attempts``. Settled records are deleted after ``retention_days``,
as finished chains are.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.alerts.matcher import Matcher
from app.alerts.senders import DeliveryError, Senders
from app.store import notifications
from app.store.database import Database, now
from config import Settings

log = logging.getLogger("jobchain.alerts")

SENDERS = 4
CLAIM = 8
# Passes in a row while there is still due work, before waiting again.
MAX_ROUNDS = 50
# Settled deliveries (delivered, failed) are kept as long as finished chains, then deleted.
PURGE_INTERVAL_SECONDS = 60.0
DAY_SECONDS = 86_400.0


class Dispatcher:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.matcher = Matcher(db, public_url=settings.public_url)
        self.senders = Senders(settings)
        # Sending takes at most a timeout per round of SENDERS; a claim outlives that.
        rounds = -(-CLAIM // SENDERS)
        self.hold_seconds = settings.notify_timeout_seconds * (rounds + 1) + 30.0
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="jobchain-alert-send")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged_at = 0.0

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self._run, name="jobchain-alerts", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run_once(self) -> int:
        """Match new events, then send what is due; returns how many attempts were made."""
        self.matcher.match()
        self._purge()
        attempted = 0
        for _ in range(MAX_ROUNDS):
            due = notifications.claim_due(self.db, CLAIM, self.hold_seconds)
            if not due:
                break
            list(self._pool.map(self._attempt, due))
            attempted += len(due)
            if self._stopping.is_set():
                break
        return attempted

    def _purge(self) -> None:
        days = self.settings.retention_days
        if days <= 0 or time.monotonic() - self._purged_at < PURGE_INTERVAL_SECONDS:
            return
        self._purged_at = time.monotonic()
        purged = notifications.purge_settled(self.db, now() - days * DAY_SECONDS)
        if purged:
            log.info("alerts: deleted %d settled delivery record(s) past retention", purged)

    def _attempt(self, delivery: dict[str, Any]) -> None:
        try:
            self.senders.send(delivery)
        except DeliveryError as exc:
            error: str | None = str(exc)
        except Exception as exc:  # a bug or an odd target must not kill the thread
            log.exception("alert delivery %s", delivery["id"])
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = None
        attempt = delivery["attempts"] + 1
        retry_in = None
        if error is not None:
            if attempt < self.settings.notify_max_attempts:
                retry_in = min(
                    self.settings.notify_retry_base_seconds * 2 ** (attempt - 1),
                    self.settings.notify_retry_max_seconds,
                )
            log.warning(
                "alert %s (rule %s) attempt %d failed: %s%s",
                delivery["id"],
                delivery["rule_name"],
                attempt,
                error,
                f"; again in {retry_in:g} s" if retry_in is not None else "; giving up",
            )
        if not notifications.record_attempt(self.db, delivery, error, retry_in):
            log.warning("alert %s: claim expired while sending; not recorded", delivery["id"])

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # e.g. the database is unreachable: try again next time
                log.warning("alerts: pass failed", exc_info=True)
            self._wake.wait(self.settings.notify_poll_seconds)
            self._wake.clear()
