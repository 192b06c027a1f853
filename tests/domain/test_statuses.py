"""The transition table: the one place that says what is legal. No database."""

from __future__ import annotations

from app.domain.join_rules import DECISION_STATUS
from app.domain.statuses import (
    JOIN_ENDINGS,
    NOT_STARTED,
    TERMINAL,
    TRANSITIONS,
    Status,
    Transition,
    allowed,
    sources,
    target,
)

# Every reason an event row may carry, except a submission (which has no source status).
MOVES = [t for t in Transition if t != Transition.SUBMIT]


def test_every_transition_is_in_the_table_with_sources() -> None:
    assert set(TRANSITIONS) == set(MOVES)
    for transition in MOVES:
        assert sources(transition), transition


def test_terminal_statuses_are_left_only_by_retry_and_join_bookkeeping() -> None:
    leaving = {t for t in MOVES if sources(t) & TERMINAL}
    assert leaving == {
        Transition.USER_RETRY,
        Transition.UNBLOCK,
        Transition.REARM,
        Transition.REOPEN,
    }
    assert all(target(t) in NOT_STARTED for t in leaving)


def test_only_claim_starts_a_job() -> None:
    assert {t for t in MOVES if target(t) == Status.PROCESSING} == {Transition.CLAIM}


def test_a_join_decision_ends_its_nodes_with_the_decision_status() -> None:
    for decision, status in DECISION_STATUS.items():
        ending = JOIN_ENDINGS[status]
        assert target(ending) == status, decision
        assert allowed(Status.PROCESSING, ending)  # the node arriving now
        assert allowed(Status.WAITING_FOR_PARENT, ending)  # a node that arrived earlier
        assert not allowed(Status.WAITING_FOR_DISPATCH, ending)  # not arrived yet


def test_finished_work_cannot_be_cancelled_or_skipped() -> None:
    for transition in (Transition.CANCEL, Transition.SKIP):
        assert not sources(transition) & TERMINAL
