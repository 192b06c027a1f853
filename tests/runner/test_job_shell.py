"""SHELL job type, run against real subprocesses."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs import shell as shell_module
from jobs.context import JobContext, JobFailed
from tests.helpers import job_context, run_job_type


def make_ctx(**parameters: Any) -> JobContext:
    return job_context("SHELL", **parameters)


run = run_job_type


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Polls ``condition`` until true or ``timeout`` passes (no bare sleeps in tests)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.02)
    return condition()


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


def start_in_thread(ctx: JobContext) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run(ctx)
        except BaseException as exc:  # recorded for the test to inspect
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_success_streams_output_and_returns_tail() -> None:
    ctx = make_ctx(command=[sys.executable, "-c", "print('hello'); print('world')"])
    result = run(ctx)
    assert result == {"exitCode": 0, "outputTail": "hello\nworld\n"}
    assert "hello\nworld\n" in ctx.output.drain()


def test_output_is_streamed_while_running() -> None:
    ctx = make_ctx(command=["sh", "-c", "echo first; sleep 30"])
    thread, _ = start_in_thread(ctx)
    seen: list[str] = []

    def first_line_logged() -> bool:
        seen.append(ctx.output.drain())
        return "first\n" in "".join(seen)

    assert wait_for(first_line_logged)  # visible before the command finishes
    ctx.abort("cancelled")
    thread.join(10)
    assert not thread.is_alive()


def test_stderr_is_merged() -> None:
    ctx = make_ctx(command=["sh", "-c", "echo out; echo err >&2"])
    result = run(ctx)
    assert "out\n" in result["outputTail"] and "err\n" in result["outputTail"]


def test_tail_is_bounded() -> None:
    ctx = make_ctx(command=[sys.executable, "-c", "for i in range(5000): print('line', i)"])
    result = run(ctx)
    assert len(result["outputTail"]) <= shell_module.TAIL_CHARS
    assert result["outputTail"].endswith("line 4999\n")


def test_nonzero_exit_fails_with_code_and_last_line() -> None:
    ctx = make_ctx(command=["sh", "-c", "echo working; echo 'disk full' >&2; exit 3"])
    with pytest.raises(JobFailed) as info:
        run(ctx)
    assert info.value.message == "command exited with code 3: disk full"
    assert info.value.result["exitCode"] == 3
    assert "working" in info.value.result["outputTail"]


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("echo hi", "not a shell string"),
        ([], "non-empty list"),
        (None, "required"),
        (["echo", 1], r"command\[1\]: Not a valid string"),
    ],
)
def test_command_validation(command: Any, fragment: str) -> None:
    params = {} if command is None else {"command": command}
    with pytest.raises(JobFailed, match=fragment):
        run(make_ctx(**params))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"cwd": 5}, "cwd"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": True}, "timeout"),
    ],
)
def test_other_parameter_validation(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(JobFailed, match=fragment):
        run(make_ctx(command=["true"], **params))


def test_cwd_and_env(tmp_path: Path) -> None:
    ctx = make_ctx(
        command=["sh", "-c", 'pwd; echo "$JOB_GREETING"; echo "${PATH:+has-path}"'],
        cwd=str(tmp_path),
        env={"JOB_GREETING": "hi there"},
    )
    result = run(ctx)
    lines = result["outputTail"].splitlines()
    assert Path(lines[0]).resolve() == tmp_path.resolve()
    assert lines[1] == "hi there"
    assert lines[2] == "has-path"  # env is merged over os.environ, not a replacement


def test_command_not_found() -> None:
    with pytest.raises(JobFailed, match=r"cannot start command: .*no-such-command-xyz"):
        run(make_ctx(command=["no-such-command-xyz"]))


def test_missing_cwd(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(JobFailed, match=r"cannot start command: .*nope"):
        run(make_ctx(command=["true"], cwd=str(missing)))


def test_timeout_kills_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    ctx = make_ctx(command=["sh", "-c", f"sleep 30 & echo $$ $! > {pidfile}; wait"], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"command timed out after 0\.5 s"):
        run(ctx)
    assert time.monotonic() - started < 5
    pids = read_pids(pidfile)
    assert len(pids) == 2
    assert wait_for(lambda: not any(alive(p) for p in pids))


def test_abort_kills_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    ctx = make_ctx(command=["sh", "-c", f"sleep 30 & echo $$ $! > {pidfile}; wait"])
    thread, outcome = start_in_thread(ctx)
    assert wait_for(lambda: len(read_pids(pidfile)) == 2)
    pids = read_pids(pidfile)
    assert all(alive(p) for p in pids)

    ctx.abort("cancelled")
    thread.join(10)
    assert not thread.is_alive()
    assert "error" not in outcome  # abort returns; the worker decides the status
    assert wait_for(lambda: not any(alive(p) for p in pids))


def test_abort_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell_module, "KILL_GRACE_SECONDS", 0.3)
    pidfile = tmp_path / "pids"
    script = f"trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.05; done"
    ctx = make_ctx(command=["sh", "-c", script])
    thread, outcome = start_in_thread(ctx)
    assert wait_for(lambda: len(read_pids(pidfile)) == 1)
    (pid,) = read_pids(pidfile)

    ctx.abort("cancelled")
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["result"]["exitCode"] == -9
    assert wait_for(lambda: not alive(pid))
    assert "sending SIGKILL" in ctx.output.drain()


def test_background_leftovers_are_stopped_after_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell_module, "DRAIN_SECONDS", 0.2)
    pidfile = tmp_path / "pids"
    ctx = make_ctx(command=["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo done"])
    result = run(ctx)
    assert result["exitCode"] == 0 and "done" in result["outputTail"]
    (pid,) = read_pids(pidfile)
    assert wait_for(lambda: not alive(pid))


def test_abort_before_start_does_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ctx = make_ctx(command=["touch", str(marker)])
    ctx.abort("cancelled")
    assert run(ctx) is None
    assert not marker.exists()
