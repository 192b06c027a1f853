"""The simplest built-in job types: NOOP, SLEEP and FAIL (and JOIN/CF, checked by the join
planner)."""

from __future__ import annotations

from typing import Any

from marshmallow import validate

from app.domain.join_plan import MAX_SKIP_MESSAGE
from app.domain.join_rules import TRIGGERS as JOIN_TRIGGERS
from jobs.context import JobContext, JobFailed
from jobs.params import (
    MAX_SECONDS,
    POSITIVE,
    AnyParameters,
    Integer,
    Number,
    Parameters,
    String,
    printable,
)
from jobs.registry import job_type


class SleepParameters(Parameters):
    seconds = Number(
        load_default=1.0,
        validate=validate.Range(min=0, max=MAX_SECONDS),
        metadata={"description": "how long to wait (stops early when cancelled)"},
    )


class FailParameters(Parameters):
    message = String(load_default="failed on purpose", validate=validate.Length(max=10_000))


class JoinParameters(Parameters):
    """A JOIN's own parameters; ``app/domain/join_plan.py`` checks what depends on the other nodes
    of the same join (a batch needs expect, the nodes agree)."""

    expect = Integer(validate=validate.Range(1, 100_000), metadata={"description": "arrivals"})
    # The triggers of app/domain/join_rules.py (tests/test_payload.py keeps them equal).
    trigger = String(validate=validate.OneOf(JOIN_TRIGGERS))
    batch = String(
        validate=[validate.Length(1, 255), printable],
        metadata={"description": "a join spanning submissions; needs expect"},
    )
    timeoutSeconds = Number(validate=validate.Range(min=0, min_inclusive=False), **POSITIVE)
    skipMessage = String(
        validate=validate.Length(1, MAX_SKIP_MESSAGE),
        metadata={"description": "what the jobs this branch's failure skips are told"},
    )


@job_type("NOOP", params=AnyParameters)
def noop(ctx: JobContext) -> Any:
    """Does nothing and finishes; useful as a chain's root or a join point. Returns
    ``parameters.result`` when given (e.g. ``{"dataVersion": "v1"}`` for an asset's data
    version), so examples and tests can report one."""
    return ctx.parameters.get("result")


@job_type("SLEEP", params=SleepParameters)
def sleep(ctx: JobContext) -> Any:
    """Waits parameters.seconds (default 1), stopping early when cancelled."""
    seconds: float = ctx.parameters["seconds"]
    ctx.progress(0, f"sleeping {seconds:g} s")
    if ctx.wait(seconds):
        return None
    ctx.progress(100, f"slept {seconds:g} s")
    return {"slept": seconds}


@job_type("FAIL", params=FailParameters)
def fail(ctx: JobContext) -> Any:
    """Always fails with parameters.message; for testing error paths."""
    raise JobFailed(ctx.parameters["message"])


@job_type("JOIN", params=JoinParameters)
def join(ctx: JobContext) -> Any:
    """Fan-in point: records this branch's arrival; the join's next jobs start once."""
    return None


job_type("CF", "Alias of JOIN for the counting calculation-flow recipe.", params=JoinParameters)(
    join
)
