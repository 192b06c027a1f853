"""When a join decides, table-driven: no database."""

from __future__ import annotations

import pytest

from app.domain.join_rules import CANCELLED, FAILED, FIRED, decide

F, X, C, S = "FINISHED", "FAILED", "CANCELLED", "SKIPPED"


def counts(*outcomes: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for outcome in outcomes:
        found[outcome] = found.get(outcome, 0) + 1
    return found


@pytest.mark.parametrize(
    ("trigger", "expected", "arrived", "decision"),
    [
        ("all_success", 3, (F, F), None),
        ("all_success", 3, (F, F, F), FIRED),
        ("all_success", 3, (F, X), None),  # waits for every branch, even after a failure
        ("all_success", 3, (F, X, F), FAILED),
        ("all_success", 2, (F, S), FAILED),
        ("all_success", 2, (F, C), FAILED),
        ("all_success", 2, (C, C), CANCELLED),
        ("all_done", 3, (X, X, F), FIRED),
        ("all_done", 2, (S, C), FIRED),
        ("all_done", 2, (C, C), CANCELLED),
        ("all_done", 3, (X, X), None),
        ("one_success", 3, (F,), FIRED),  # early
        ("one_success", 3, (X, X), None),
        ("one_success", 3, (X, X, X), FAILED),
        ("one_failed", 3, (X,), FIRED),  # early
        ("one_failed", 3, (F, F, F), FAILED),
        ("one_failed", 2, (C, C), CANCELLED),
        ("all_success", 2, (F, F, F), FIRED),  # more arrivals than expected: decided anyway
    ],
)
def test_decide(
    trigger: str, expected: int, arrived: tuple[str, ...], decision: str | None
) -> None:
    assert decide(trigger, expected, counts(*arrived)) == decision
