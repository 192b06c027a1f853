"""What a job type's function sees while it runs: ids, parameters, progress, log, abort."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class JobFailed(Exception):
    """Raise to fail a job with a clean message (any other exception fails it too)."""

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.message = message
        self.result = result


class JobLog:
    """A thread-safe, byte-bounded buffer of log text not yet written to the database."""

    def __init__(self, limit_bytes: int = 64 * 1024):
        self._limit = limit_bytes
        self._chunks: deque[str] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size > self._limit and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def drain(self) -> str:
        """Everything written since the last drain (the store keeps the bounded tail)."""
        with self._lock:
            text = "".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return text


class _LogHandler(logging.Handler):
    def __init__(self, sink: JobLog):
        super().__init__()
        self._sink = sink
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.write(self.format(record) + "\n")


@dataclass
class Progress:
    """Latest progress report; the worker's heartbeat persists it."""

    percent: float | None = None
    message: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class JobContext:
    """Handed to a job type's function. Cancellation is cooperative: check
    :meth:`should_abort` (or use :meth:`wait`) and return promptly when it says so."""

    def __init__(
        self,
        *,
        job_id: int,
        root_id: int,
        target_object: str,
        target_id: str | None,
        job_type: str,
        parameters: dict[str, Any],
        attempt: int,
        log_limit_bytes: int = 64 * 1024,
    ):
        self.job_id = job_id
        self.root_id = root_id
        self.target_object = target_object
        self.target_id = target_id
        self.job_type = job_type
        self.parameters = parameters
        self.attempt = attempt
        self.output = JobLog(log_limit_bytes)
        self.abort_event = threading.Event()
        self.abort_reason: str | None = None
        self._progress = Progress()
        # An unregistered logger: one per attempt, garbage-collected with the context
        # (logging.getLogger would keep every job's logger alive for the process lifetime).
        self.logger = logging.Logger(f"jobchain.job.{job_id}", logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(_LogHandler(self.output))

    def progress(self, percent: float | None = None, message: str | None = None) -> None:
        """Report progress (0-100) and/or a status message; shown while the job runs."""
        with self._progress.lock:
            if percent is not None:
                self._progress.percent = max(0.0, min(100.0, float(percent)))
            if message is not None:
                self._progress.message = message

    def snapshot_progress(self) -> tuple[float | None, str | None]:
        with self._progress.lock:
            return self._progress.percent, self._progress.message

    def should_abort(self) -> bool:
        """True once the job was cancelled or timed out; stop working and return."""
        return self.abort_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True early if the job must abort."""
        return self.abort_event.wait(max(0.0, seconds))

    def abort(self, reason: str) -> None:
        if not self.abort_event.is_set():
            self.abort_reason = reason
            self.abort_event.set()

    def close(self) -> None:
        self.logger.handlers = []


MAX_RESULT_BYTES = 64 * 1024
MAX_RESULT_DEPTH = 32


def result_problem(result: Any) -> str | None:
    """Why ``result`` cannot be stored as a job's result (JSON of bounded size and depth),
    or None. Job types return results; integration systems send them in callbacks."""
    stack = [(result, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_RESULT_DEPTH:
            return f"job result is nested deeper than {MAX_RESULT_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    try:
        size = len(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as exc:
        return f"job result is not JSON-serializable: {exc}"
    if size > MAX_RESULT_BYTES:
        return f"job result is {size} bytes; the limit is {MAX_RESULT_BYTES}"
    return None
