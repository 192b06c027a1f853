"""The status guard every update of a transition carries, and how it is written in SQL.

The guard is ``status IN <the transition's sources>`` (:data:`app.domain.statuses.TRANSITIONS`).
Its statuses are written into the statement's text, not bound: the plan PostgreSQL keeps for
a prepared statement then knows them, as a plan for the values would.

How a statement finds its rows decides how the guard is written (:class:`FoundBy`). Without
planner statistics (a young table) or with statistics that call a status rare (a burst of
waiting jobs), PostgreSQL prices "every row of this status" like one row, and a guard it can
use as an index condition may turn a lookup by key into a scan of every waiting job.
"""

from __future__ import annotations

from enum import Enum

from sqlalchemy import ColumnElement, String, literal_column

from app.domain.statuses import Status, Transition, sources
from app.store.tables import jobs


class FoundBy(Enum):
    """How an update's condition finds its rows."""

    STATUS = "status"  # by status (e.g. expired leases): the guard may lead an index scan
    KEY = "key"  # by id, parent or join: the guard is a filter on the rows the key found
    LOCK = "lock"  # locked in the same statement under the guard: it is not repeated


def froms(transition: Transition, only_from: Status | None) -> list[Status]:
    """The statuses ``transition`` may move rows from (``only_from``: one of them)."""
    legal = sources(transition)
    if only_from is None:
        return sorted(legal)
    if only_from not in legal:
        raise ValueError(f"{transition} is not allowed from {only_from}")
    return [only_from]


def guard(
    transition: Transition,
    only_from: Status | None = None,
    found_by: FoundBy = FoundBy.STATUS,
) -> ColumnElement[bool]:
    """``status IN <sources>``, written for ``found_by`` (LOCK: the locking select's)."""
    statuses = [status_literal(s) for s in froms(transition, only_from)]
    check = jobs.c.status == statuses[0] if len(statuses) == 1 else jobs.c.status.in_(statuses)
    # ``(...) IS TRUE`` is the same test on a NOT NULL column, and no index matches it.
    return check.is_(True) if found_by is FoundBy.KEY else check


def status_literal(status: Status) -> ColumnElement[str]:
    """A status as a constant in the statement's text (statuses are ours, never input)."""
    return literal_column(f"'{status.value}'", String)
