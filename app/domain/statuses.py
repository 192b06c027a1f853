"""The job state machine: status names, their groups, and every allowed transition.

This module is the only place that decides whether a status change is legal. The store
applies a change with a guarded ``UPDATE ... WHERE status = <from>``; this table says which
``<from>`` values each change may start from.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    WAITING_FOR_PARENT = "WAITING_FOR_PARENT"
    WAITING_FOR_DISPATCH = "WAITING_FOR_DISPATCH"
    PROCESSING = "PROCESSING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


# A job in one of these will never change again on its own (only retry revives it).
TERMINAL = frozenset({Status.FINISHED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})
# Not started yet: cancelling it is immediate and cascades to its whole subtree.
NOT_STARTED = frozenset({Status.WAITING_FOR_PARENT, Status.WAITING_FOR_DISPATCH})
# A user may cancel these; PROCESSING is cancelled cooperatively by its worker.
CANCELLABLE = NOT_STARTED | {Status.PROCESSING}
# A user may retry these: the job runs again and what it blocked returns to waiting.
RETRYABLE = frozenset({Status.FAILED, Status.CANCELLED})
# A JOIN node takes its join's decision while arriving (claimed) or waiting after arrival.
JOIN_DECIDABLE = frozenset({Status.PROCESSING, Status.WAITING_FOR_PARENT})


class Transition(StrEnum):
    """Why a job changes status; recorded as the reason of the event row."""

    SUBMIT = "submit"
    PARENT_FINISHED = "parent finished"
    PARENT_FAILED = "parent failed"
    CLAIM = "claim"
    UNCLAIM = "handed back unstarted"
    FINISH = "finish"
    FAIL = "fail"
    RETRY_LATER = "automatic retry"
    CANCEL = "cancel"
    SKIP = "skip"
    RERUN = "lease expired, re-run"
    INTERRUPT = "lease expired, interrupted"
    USER_RETRY = "retry"
    UNBLOCK = "blocker retried"
    ARRIVE = "parent ended; arrive at join"
    AWAIT_JOIN = "arrived; the join waits for its other branches"
    JOIN_FIRED = "join fired"
    JOIN_FAILED = "join did not succeed"
    JOIN_CANCELLED = "every branch of the join was cancelled"
    REARM = "parent retried; arrive again"
    REOPEN = "a branch was retried; the join waits again"


# transition -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[Transition, tuple[frozenset[Status], Status]] = {
    Transition.PARENT_FINISHED: (
        frozenset({Status.WAITING_FOR_PARENT}),
        Status.WAITING_FOR_DISPATCH,
    ),
    Transition.PARENT_FAILED: (frozenset({Status.WAITING_FOR_PARENT}), Status.WAITING_FOR_DISPATCH),
    Transition.CLAIM: (frozenset({Status.WAITING_FOR_DISPATCH}), Status.PROCESSING),
    Transition.UNCLAIM: (frozenset({Status.PROCESSING}), Status.WAITING_FOR_DISPATCH),
    Transition.FINISH: (frozenset({Status.PROCESSING}), Status.FINISHED),
    Transition.FAIL: (frozenset({Status.PROCESSING}), Status.FAILED),
    Transition.RETRY_LATER: (frozenset({Status.PROCESSING}), Status.WAITING_FOR_DISPATCH),
    Transition.CANCEL: (CANCELLABLE, Status.CANCELLED),
    Transition.SKIP: (frozenset({Status.WAITING_FOR_PARENT}), Status.SKIPPED),
    Transition.RERUN: (frozenset({Status.PROCESSING}), Status.WAITING_FOR_DISPATCH),
    Transition.INTERRUPT: (frozenset({Status.PROCESSING}), Status.FAILED),
    Transition.USER_RETRY: (RETRYABLE, Status.WAITING_FOR_DISPATCH),
    Transition.UNBLOCK: (
        frozenset({Status.SKIPPED, Status.CANCELLED}),
        Status.WAITING_FOR_PARENT,
    ),
    # A JOIN node starts whatever its parent's outcome: every outcome must reach the join.
    # It carries that outcome (recorded when released) and arrives when claimed.
    Transition.ARRIVE: (frozenset({Status.WAITING_FOR_PARENT}), Status.WAITING_FOR_DISPATCH),
    # Arrived before its join decided: it waits for the other branches.
    Transition.AWAIT_JOIN: (frozenset({Status.PROCESSING}), Status.WAITING_FOR_PARENT),
    # Every JOIN node ends with its join's decision: at its arrival if the join has decided,
    # else when the join decides.
    Transition.JOIN_FIRED: (JOIN_DECIDABLE, Status.FINISHED),
    Transition.JOIN_FAILED: (JOIN_DECIDABLE, Status.FAILED),
    Transition.JOIN_CANCELLED: (JOIN_DECIDABLE, Status.CANCELLED),
    # A retried parent's JOIN node arrives again, so its join sees the final outcome. One
    # a worker holds (arriving, or the decider that ends the waiting nodes next) is taken
    # back: its lease no longer matches.
    Transition.REARM: (
        TERMINAL | NOT_STARTED | {Status.PROCESSING},
        Status.WAITING_FOR_PARENT,
    ),
    # A join that failed (or was cancelled) because of a retried branch decides again: the
    # nodes that had arrived wait again.
    Transition.REOPEN: (frozenset({Status.FAILED, Status.CANCELLED}), Status.WAITING_FOR_PARENT),
}

# How a join's decision ends its JOIN nodes.
JOIN_ENDINGS: dict[Status, Transition] = {
    Status.FINISHED: Transition.JOIN_FIRED,
    Status.FAILED: Transition.JOIN_FAILED,
    Status.CANCELLED: Transition.JOIN_CANCELLED,
}


def sources(transition: Transition) -> frozenset[Status]:
    """Statuses from which ``transition`` may be applied (the guard of its UPDATE)."""
    return TRANSITIONS[transition][0]


def target(transition: Transition) -> Status:
    """The status ``transition`` leads to."""
    return TRANSITIONS[transition][1]


def allowed(current: Status | str, transition: Transition) -> bool:
    return Status(current) in sources(transition)
