"""The kinds of event a rule can ask for, and whether a rule wants a given event.

Every kind is derived from rows the engine writes anyway (``job_events``,
``schedule_fires``): alerts need no hook in the engine. (Asset late/held and model filters
wait for the automation feature.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JOB_FAILED = "job_failed"  # a job ended FAILED (after its last attempt, or interrupted)
CHAIN_FAILED = "chain_failed"  # a chain has nothing left to run and a job of it failed
JOIN_FAILED = "join_failed"  # a join did not succeed (its rule failed, or it timed out)
SCHEDULE_FIRE_FAILED = "schedule_fire_failed"  # a fire could not start its chain
LEASE_EXPIRED = "lease_expired"  # a running job's worker vanished (re-run or interrupted)

KINDS = (JOB_FAILED, CHAIN_FAILED, JOIN_FAILED, SCHEDULE_FIRE_FAILED, LEASE_EXPIRED)


@dataclass(frozen=True)
class Event:
    """One thing that happened, with what filters look at and what a notification says."""

    kind: str
    key: str  # unique per event: a rule is told once per key
    at: float
    job_type: str | None = None
    target_object: str | None = None
    schedule: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


def wants(rule: Mapping[str, Any], event: Event) -> bool:
    """Whether ``rule`` (a stored rule) asks to be told about ``event``.

    A filter that names something the event does not have (a job type for a schedule
    fire, a schedule for a chain submitted by hand) excludes it.
    """
    if event.kind not in rule["events"] or event.at < rule["active_since"]:
        return False
    if rule.get("job_type") and rule["job_type"] != event.job_type:
        return False
    if rule.get("target_object") and not _target_matches(
        rule["target_object"], event.target_object
    ):
        return False
    return not (rule.get("schedule") and rule["schedule"] != event.schedule)


def _target_matches(pattern: str, target: str | None) -> bool:
    """Exact, or a prefix when the pattern ends with ``*`` (``155.*``)."""
    if target is None:
        return False
    if pattern.endswith("*"):
        return target.startswith(pattern[:-1])
    return target == pattern
