"""The status history operators read: a hand-back and the claim it undid are internal."""

from __future__ import annotations

from typing import Any

from app.domain.history import mark_internal, status_history


def event(reason: str, attempt: int) -> dict[str, Any]:
    return {"reason": reason, "attempt": attempt}


def test_a_hand_back_and_the_claim_it_undid_are_internal() -> None:
    events = [
        event("submit", 0),
        event("claim", 1),
        event("handed back unstarted", 0),
        event("claim", 1),
        event("handed back unstarted", 0),
        event("claim", 1),
        event("finish", 1),
    ]
    assert [e["internal"] for e in mark_internal(events)] == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    assert [(e["reason"], e["attempt"]) for e in status_history(events)] == [
        ("submit", 0),
        ("claim", 1),
        ("finish", 1),
    ]


def test_without_a_hand_back_nothing_is_internal() -> None:
    events = [event("submit", 0), event("claim", 1), event("lease expired, re-run", 1)]
    assert status_history(events) == [{**e, "internal": False} for e in events]
    assert "internal" not in events[0]  # the caller's rows are not changed
