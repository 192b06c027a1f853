"""The simplest built-in job types: NOOP, SLEEP and FAIL."""

from __future__ import annotations

from typing import Any

from jobs.context import JobContext, JobFailed
from jobs.registry import job_type


@job_type("NOOP")
def noop(ctx: JobContext) -> Any:
    """Does nothing and finishes; useful as a chain's root or a join point."""
    return None


@job_type("SLEEP")
def sleep(ctx: JobContext) -> Any:
    """Waits parameters.seconds (default 1), stopping early when cancelled."""
    seconds = float(ctx.parameters.get("seconds", 1))
    if seconds < 0:
        raise JobFailed("parameters.seconds must not be negative")
    ctx.progress(0, f"sleeping {seconds:g} s")
    if ctx.wait(seconds):
        return None
    ctx.progress(100, f"slept {seconds:g} s")
    return {"slept": seconds}


@job_type("FAIL")
def fail(ctx: JobContext) -> Any:
    """Always fails with parameters.message; for testing error paths."""
    raise JobFailed(str(ctx.parameters.get("message", "failed on purpose")))


@job_type("JOIN")
def join(ctx: JobContext) -> Any:
    """Fan-in point: records this branch's arrival; the join's next jobs start once."""
    return None


job_type("CF", "Alias of JOIN for the counting calculation-flow recipe.")(join)
