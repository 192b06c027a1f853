"""The one decision of what a reported end of an attempt means for the job.

A worker's report and an EXTERNAL job's callback end an attempt the same way; both ask
:func:`decide_outcome`, so a rule (retry budget, cancel wins, backoff) lives only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.statuses import Transition


@dataclass(frozen=True)
class RetryPolicy:
    """Automatic retries back off exponentially: base * 2^(n-1), capped."""

    base_seconds: float = 1.0
    max_seconds: float = 600.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Attempt:
    """What the store knows of the attempt that ended."""

    attempt: int  # attempts made so far, this one included
    attempt_floor: int  # attempts made before the latest user retry
    max_attempts: int  # the budget counted from attempt_floor
    cancel_requested: bool


@dataclass(frozen=True)
class Verdict:
    """The transition to apply, the message to store, and when a retry is due."""

    transition: Transition
    message: str | None
    retry_delay: float | None = None


def decide_outcome(
    attempt: Attempt,
    *,
    failed: bool,
    message: str | None,
    policy: RetryPolicy,
    started: bool = True,
) -> Verdict:
    """Finished, failed with attempts left (retry later), failed for good, or cancelled.

    A cancel request wins over whatever the attempt reported; a job that never started
    (cancelled while it waited in its worker's batch) is cancelled, never run.
    """
    if not started:
        return Verdict(Transition.CANCEL, "cancelled before it started")
    if attempt.cancel_requested:
        return Verdict(Transition.CANCEL, "cancelled while running")
    if not failed:
        return Verdict(Transition.FINISH, message)
    used = attempt.attempt - attempt.attempt_floor
    if used < attempt.max_attempts:
        delay = policy.delay(used)
        note = f"attempt {attempt.attempt} failed; retry in {delay:g} s"
        return Verdict(Transition.RETRY_LATER, f"{message} ({note})" if message else note, delay)
    return Verdict(Transition.FAIL, message)
