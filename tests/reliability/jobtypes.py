"""The battery's job type, ``BATTERY``: it records each run in a shared journal.

Worker processes load it with ``JOBCHAIN_JOB_MODULES=tests.reliability.jobtypes``. Every run
appends a start line and, if it gets that far, an end line to the file named by
``BATTERY_JOURNAL`` (one ``write`` on an ``O_APPEND`` descriptor, so lines of concurrent
processes never interleave). The invariant checker reads them back: which process ran which
attempt of which job, and when.

Parameters: ``ms`` (how long the run takes, default 0) and ``abortable`` (default true:
the run stops early when its worker asks; false: it sleeps through, as a function that
never checks ``should_abort`` would).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from jobs import JobContext, job_type

JOURNAL_ENV = "BATTERY_JOURNAL"
_journals: dict[str, int] = {}  # path -> descriptor, opened once per process
_journal_lock = threading.Lock()


def _append(kind: str, ctx: JobContext) -> None:
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    with _journal_lock:
        if path not in _journals:
            _journals[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = f"{kind} {ctx.job_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
    os.write(_journals[path], line.encode())


@job_type("BATTERY")
def battery(ctx: JobContext) -> Any:
    """Records its run in the reliability battery's journal; takes parameters.ms."""
    _append("start", ctx)
    seconds = float(ctx.parameters.get("ms", 0)) / 1000
    if seconds > 0:
        if ctx.parameters.get("abortable", True):
            ctx.wait(seconds)
        else:
            time.sleep(seconds)
    _append("end", ctx)
    return None
