"""What one worker thread holds: its lane of claimed and finished jobs, and a running job.

A lane batches quick jobs: up to 16 claimed together, their outcomes recorded together.
The worker pool (app/runner/worker_pool.py) moves jobs through it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from app.store import claims, completion, start_checks
from app.store.database import Database
from app.store.join_endings import Decided
from jobs.context import JobContext


@dataclass
class Lane:
    """One worker thread's jobs: claimed but not started, and done but not yet recorded."""

    held: deque[claims.Claim] = field(default_factory=deque)
    done: list[completion.Done] = field(default_factory=list)
    # JOIN nodes that decided their join in this lane's last commit: still held, they end
    # (with the nodes that waited) in the lane's next commit.
    endings: list[Decided] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    batch: int = 1
    # The first job of the batch just claimed starts as claimed; every later one waited,
    # and is checked for a cancel before it starts.
    first_of_batch: int | None = None
    # The thread's own connection for that check (None: a pooled transaction per check).
    start_checks: start_checks.StartChecks | None = None

    def may_start(self, db: Database, claim: claims.Claim) -> bool:
        if self.start_checks is not None:
            with self.lock:
                waiting = list(self.held)
            return self.start_checks.may_start(claim, waiting)
        return start_checks.start_check(db, claim)

    def take(self) -> claims.Claim | None:
        with self.lock:
            return self.held.popleft() if self.held else None

    def drain(self) -> tuple[list[claims.Claim], list[completion.Done]]:
        with self.lock:
            held, done = list(self.held), self.done
            self.held.clear()
            self.done = []
        return held, done


@dataclass
class Running:
    claim: claims.Claim
    ctx: JobContext
    deadline: float | None
    lane: Lane
    started: float = field(default_factory=time.monotonic)
    # Epoch seconds: when the function really started and returned (None: still running).
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    last_beat: float = field(default_factory=time.monotonic)
    timed_out_at: float | None = None
    settled: bool = False  # finished by the monitor (timeout) or lease lost
    handed_back: bool = False  # its lane's other jobs were handed back (it is slow)
