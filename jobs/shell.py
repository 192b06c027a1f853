"""SHELL job type: run an argv as a child process, streaming its output into the job log.

The command is an argv list, never a shell string, so parameters can't inject shell syntax;
ask for ``["sh", "-c", "..."]`` explicitly when a shell is wanted. The child gets its own
process group so cancelling the job also stops whatever it spawned.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from typing import IO, Any

from marshmallow import ValidationError, fields, validate

from jobs.context import JobContext, JobFailed
from jobs.params import MAX_SECONDS, Number, Parameters, String, StringMap
from jobs.registry import job_type

TAIL_CHARS = 4096
"""How much trailing output is kept in the job's result (the log holds the rest)."""
KILL_GRACE_SECONDS = 5.0
"""Time between SIGTERM and SIGKILL, so the command can clean up."""
POLL_SECONDS = 0.05
DRAIN_SECONDS = 1.0
"""How long to wait for the output pipe to close after the command itself has exited."""
MAX_LINE_CHARS = 8192
"""Very long lines are read in pieces so one line can't hold unbounded memory."""


class _OutputPump:
    """Reads the child's merged stdout/stderr in a thread: every line goes to the job log
    as it arrives, and the last :data:`TAIL_CHARS` are kept for the result."""

    def __init__(self, stream: IO[str], ctx: JobContext):
        self._stream = stream
        self._ctx = ctx
        self._tail: deque[str] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"job-{ctx.job_id}-output", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in iter(lambda: self._stream.readline(MAX_LINE_CHARS), ""):
                self._ctx.output.write(line)
                with self._lock:
                    self._tail.append(line)
                    self._size += len(line)
                    while self._size > TAIL_CHARS and len(self._tail) > 1:
                        self._size -= len(self._tail.popleft())
        except (OSError, ValueError):
            pass  # pipe closed under us; whatever was read is already recorded
        finally:
            self.done.set()

    def tail(self) -> str:
        with self._lock:
            return "".join(self._tail)[-TAIL_CHARS:]

    def close(self) -> None:
        if self.done.is_set():
            self._thread.join()
            self._stream.close()


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[str], pump: _OutputPump, ctx: JobContext) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after the grace period.

    "Finished" means the command exited and the output pipe closed, i.e. nothing it spawned
    still holds the pipe; this avoids relying on zombies being reaped by init."""
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
        if pump.done.wait(max(0.0, deadline - time.monotonic())):
            return
    except subprocess.TimeoutExpired:
        pass
    ctx.logger.warning("process group %d ignored SIGTERM; sending SIGKILL", proc.pid)
    _signal_group(proc, signal.SIGKILL)
    proc.wait()
    pump.done.wait(KILL_GRACE_SECONDS)


def _last_line(text: str, limit: int = 200) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


class Argv(fields.List):
    """The command as an argv list; a shell string is refused with a hint, not run."""

    def __init__(self, **kwargs: Any):
        super().__init__(
            String(),
            validate=validate.Length(min=1, error="must be a non-empty list of strings (an argv)"),
            **kwargs,
        )

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[Any | None]:
        if isinstance(value, str):
            raise ValidationError(
                'must be a list of strings (an argv), not a shell string; use ["sh", "-c", '
                '"..."] if you need a shell'
            )
        return super()._deserialize(value, attr, data, **kwargs)


class ShellParameters(Parameters):
    command = Argv(
        required=True,
        error_messages={"required": "is required: a non-empty list of strings (an argv)"},
    )
    cwd = String(metadata={"description": "working directory"})
    env = StringMap(metadata={"description": "added to the service's environment"})
    timeout = Number(
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_SECONDS),
        metadata={
            "description": "seconds; the process group is stopped after it",
            "exclusiveMinimum": True,
        },
    )


@job_type("SHELL", role="admin", params=ShellParameters)
def shell(ctx: JobContext) -> Any:
    """Runs parameters.command (an argv list) with optional cwd, env and timeout."""
    params = ctx.parameters
    command: list[str] = params["command"]
    cwd: str | None = params.get("cwd")
    env: dict[str, str] = params.get("env", {})
    timeout: float | None = params.get("timeout")
    if ctx.should_abort():
        return None

    ctx.logger.info("running %s%s", shlex.join(command), f" in {cwd}" if cwd else "")
    ctx.progress(None, f"running {command[0]}")
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
    except OSError as exc:
        raise JobFailed(f"cannot start command: {exc}") from exc

    assert proc.stdout is not None
    pump = _OutputPump(proc.stdout, ctx)
    pump.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if ctx.should_abort():
                ctx.logger.info(
                    "aborting (%s): stopping process group %d", ctx.abort_reason, proc.pid
                )
                _stop(proc, pump, ctx)
                return {"exitCode": proc.returncode, "outputTail": pump.tail()}
            if deadline is not None and time.monotonic() >= deadline:
                _stop(proc, pump, ctx)
                raise JobFailed(
                    f"command timed out after {timeout:g} s",
                    result={"exitCode": proc.returncode, "outputTail": pump.tail()},
                )
            ctx.wait(POLL_SECONDS)

        # The command exited; anything it left running in the background still holds the
        # pipe. Give the output a moment to finish, then stop the leftovers.
        if not pump.done.wait(DRAIN_SECONDS):
            ctx.logger.warning("command exited but its background processes are still running")
            _stop(proc, pump, ctx)
    finally:
        if proc.poll() is None:  # an unexpected error above: never leave the child behind
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        pump.close()

    code = proc.returncode
    tail = pump.tail()
    ctx.logger.info("command exited with code %d", code)
    result = {"exitCode": code, "outputTail": tail}
    if code != 0:
        last = _last_line(tail)
        message = f"command exited with code {code}" + (f": {last}" if last else "")
        raise JobFailed(message, result=result)
    ctx.progress(100, "command exited with code 0")
    return result
