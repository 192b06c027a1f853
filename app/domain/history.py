"""A job's status history as operators read it: internal moves marked, so views can leave
them out while the event log keeps every row.

A worker stuck behind a slow job hands back the jobs it claimed but never started
(``Transition.UNCLAIM``): PROCESSING -> WAITING_FOR_DISPATCH with the attempt taken back. Nothing
ran; the claim and its hand-back are bookkeeping between workers, not part of the job's story.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.domain.statuses import Transition

HAND_BACK = Transition.UNCLAIM.value
CLAIM = Transition.CLAIM.value


def mark_internal(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event (oldest first) with ``internal``: true for a hand-back and for the claim
    it undid, false for the rest."""
    marked = [{**event, "internal": False} for event in events]
    for index, event in enumerate(marked):
        if event["reason"] != HAND_BACK:
            continue
        event["internal"] = True
        for earlier in reversed(marked[:index]):
            if earlier["reason"] == CLAIM and not earlier["internal"]:
                earlier["internal"] = True
                break
    return marked


def status_history(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events an operator reads as what happened to the job: internal moves left out."""
    return [event for event in mark_internal(events) if not event["internal"]]
