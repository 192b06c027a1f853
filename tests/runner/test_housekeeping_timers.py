"""Housekeeping's timers (app/runner/housekeeping.py): what APScheduler's interval jobs did
(``max_instances=1``, ``coalesce=True``), on a thread per task."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from app.runner.housekeeping import Timers
from tests.helpers import wait_until


def test_a_task_runs_every_interval_after_the_first_and_stops_on_shutdown() -> None:
    runs: list[float] = []

    def tick() -> None:
        runs.append(time.monotonic())

    timers = Timers()
    timers.every(0.05, tick)
    started = time.monotonic()
    timers.start()
    wait_until(lambda: len(runs) >= 3, timeout=10, what="three runs")
    timers.shutdown()
    assert runs[0] - started >= 0.05  # not at start: the caller runs what must run now
    # shutdown() joined the task's thread: nothing is left that could run it again.
    assert not [t for t in threading.enumerate() if t.name == "jobchain-tick"]
    assert timers.tasks == ["tick"]


def test_a_run_longer_than_the_interval_is_never_overlapped() -> None:
    running = threading.Lock()
    runs: list[float] = []

    def slow() -> None:
        assert running.acquire(blocking=False), "two runs at once"
        runs.append(time.monotonic())
        time.sleep(0.25)  # the task's own work, five intervals long (not a wait)
        running.release()

    timers = Timers()
    timers.every(0.05, slow)
    timers.start()
    wait_until(lambda: len(runs) >= 3, timeout=10, what="three runs")
    timers.shutdown()
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # Each run starts after the previous one ended (at the next slot).
    assert all(gap >= 0.25 for gap in gaps), gaps


def test_a_failing_task_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    def broken() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    timers = Timers()
    timers.every(0.02, broken)
    timers.start()
    wait_until(lambda: len(runs) >= 2, timeout=10, what="a second run")
    timers.shutdown()
    assert "housekeeping task broken failed" in caplog.text


def test_one_task_name_is_scheduled_once() -> None:
    timers = Timers()
    timers.every(1.0, print)
    with pytest.raises(ValueError, match="scheduled already"):
        timers.every(2.0, print)
