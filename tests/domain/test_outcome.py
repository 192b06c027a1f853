"""The outcome decision, table-driven: no database."""

from __future__ import annotations

import pytest

from app.domain.outcome import Attempt, RetryPolicy, Verdict, decide_outcome
from app.domain.statuses import Transition

POLICY = RetryPolicy(base_seconds=2.0, max_seconds=5.0)
RUNNING_CANCEL = "cancelled while running"


@pytest.mark.parametrize(
    ("attempt", "failed", "started", "expected"),
    [
        # finished
        (Attempt(1, 0, 1, False), False, True, Verdict(Transition.FINISH, "msg")),
        # failed, attempts left: retry after base * 2^(n-1), capped
        (
            Attempt(1, 0, 3, False),
            True,
            True,
            Verdict(Transition.RETRY_LATER, "msg (attempt 1 failed; retry in 2 s)", 2.0),
        ),
        (
            Attempt(2, 0, 3, False),
            True,
            True,
            Verdict(Transition.RETRY_LATER, "msg (attempt 2 failed; retry in 4 s)", 4.0),
        ),
        # failed for good: the budget is spent
        (Attempt(3, 0, 3, False), True, True, Verdict(Transition.FAIL, "msg")),
        # a user retry gives a fresh budget counted from the floor
        (
            Attempt(4, 3, 3, False),
            True,
            True,
            Verdict(Transition.RETRY_LATER, "msg (attempt 4 failed; retry in 2 s)", 2.0),
        ),
        (Attempt(6, 3, 3, False), True, True, Verdict(Transition.FAIL, "msg")),
        # a cancel request wins over success and failure
        (
            Attempt(1, 0, 1, True),
            False,
            True,
            Verdict(Transition.CANCEL, "cancelled while running"),
        ),
        (Attempt(1, 0, 3, True), True, True, Verdict(Transition.CANCEL, "cancelled while running")),
        # never started: cancelled, never run
        (
            Attempt(1, 0, 1, True),
            False,
            False,
            Verdict(Transition.CANCEL, "cancelled before it started"),
        ),
    ],
)
def test_decide_outcome(attempt: Attempt, failed: bool, started: bool, expected: Verdict) -> None:
    verdict = decide_outcome(attempt, failed=failed, message="msg", policy=POLICY, started=started)
    assert verdict == expected


def test_retry_message_without_a_message() -> None:
    verdict = decide_outcome(Attempt(1, 0, 2, False), failed=True, message=None, policy=POLICY)
    assert verdict.message == "attempt 1 failed; retry in 2 s"


@pytest.mark.parametrize(("attempt", "delay"), [(0, 2.0), (1, 2.0), (2, 4.0), (3, 5.0), (30, 5.0)])
def test_backoff_is_capped(attempt: int, delay: float) -> None:
    assert POLICY.delay(attempt) == delay
