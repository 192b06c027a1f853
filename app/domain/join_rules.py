"""When a join decides, and what its decision means for the jobs that follow it.

A join counts the outcomes its branches arrived with. The decision is a function of the
trigger rule, the expected count and those counts; the store applies it exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.domain.statuses import Status

WAITING, FIRED, FAILED, CANCELLED = "WAITING", "FIRED", "FAILED", "CANCELLED"
TRIGGERS = ("all_success", "all_done", "one_success", "one_failed")

# The status a decision gives the join's JOIN nodes, and the outcome its next jobs see.
DECISION_STATUS: dict[str, Status] = {
    FIRED: Status.FINISHED,
    FAILED: Status.FAILED,
    CANCELLED: Status.CANCELLED,
}


def decide(trigger: str, expected: int, outcomes: Mapping[str, int]) -> str | None:
    """The join's decision once these branch outcomes have arrived, or None to wait.

    ``one_success`` and ``one_failed`` may fire before every branch arrived; every other
    decision waits for ``expected`` arrivals. A join whose every branch was cancelled is
    cancelled, so what follows it is cancelled too rather than skipped.
    """
    arrived = sum(outcomes.values())
    finished = outcomes.get(Status.FINISHED.value, 0)
    failed = outcomes.get(Status.FAILED.value, 0)
    if trigger == "one_success" and finished:
        return FIRED
    if trigger == "one_failed" and failed:
        return FIRED
    if arrived < expected:
        return None
    if outcomes.get(Status.CANCELLED.value, 0) == arrived:
        return CANCELLED
    if trigger == "all_done":
        return FIRED
    if trigger == "all_success" and finished == arrived:
        return FIRED
    return FAILED
