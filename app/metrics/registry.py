"""What one process's ``/metrics`` renders, in either of the two modes.

Single process (``jobchain serve``, gunicorn with one worker): the process families live in
prometheus_client's default registry (with its process and Python collectors), the
event-log families and the database gauges in a registry of the app's own.

Multiprocess (gunicorn with several workers, ``PROMETHEUS_MULTIPROC_DIR`` set before the
workers start): counters and histograms are kept in files in that directory and every
worker's scrape adds them up (prometheus_client's multiprocess mode). The event log is read
by one worker of the node only (whoever holds a lock file in the directory), so its counts
are not multiplied by the number of workers; if it exits, another takes the lock over and
the totals go on from the files. The database gauges are read at scrape time by whichever
worker answers.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client import multiprocess as mp

from app.metrics.collector import DatabaseCollector
from app.metrics.tail import EventTail
from app.store.database import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TAIL_LOCK = "jobchain-event-tail.lock"

# Per-process families, counted where the thing happens (the API process).
CALLBACKS = Counter(
    "jobchain_callbacks",
    "Callbacks from integration systems: accepted, or refused with the error code.",
    ["outcome", "reason"],
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class MetricsRegistry:
    """Renders this process's ``/metrics``; starts reading the event log on first use."""

    def __init__(self, db: Database, tail_interval: float = 1.0) -> None:
        self.db = db
        self.directory = multiprocess_dir()
        self._lock_file: IO[bytes] | None = None
        self._start_lock = threading.Lock()
        self.collector = DatabaseCollector(db)
        self.registry = CollectorRegistry()
        if self.directory:
            self.tail = EventTail(db, None, tail_interval, self._hold_tail_lock)
        else:
            self.tail = EventTail(db, self.registry, tail_interval)
            self.registry.register(self.collector)
        self._started = False

    def render(self) -> bytes:
        self._ensure_started()
        if not self.directory:
            return generate_latest(REGISTRY) + generate_latest(self.registry)
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=self.directory)
        registry.register(self.collector)
        return generate_latest(registry)

    def close(self) -> None:
        self.tail.stop()
        if self._lock_file is not None:
            self._lock_file.close()

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._started:
                self.tail.start()
                self._started = True

    def _hold_tail_lock(self) -> bool:
        """Whether this process reads the event log for its node (takes the lock if free)."""
        if self._lock_file is not None:
            return True
        assert self.directory is not None
        handle = (Path(self.directory) / TAIL_LOCK).open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True
