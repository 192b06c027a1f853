"""The kinds of event a rule can ask for, and whether a rule wants a given event.

Every kind is derived from rows the engine writes anyway (``job_events``,
``schedule_fires``, and the reconciliation ticks' ``asset_events``): alerts need no hook in
the engine.
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
# Declarative automation (asset_events rows, one per episode or change):
ASSET_LATE = "asset_late"  # an asset's freshness policy is not met any more
ASSET_RECOVERED = "asset_recovered"  # a late asset meets its policy again
ASSET_HELD = "asset_held"  # automation stopped refreshing an asset after failed runs
ASSET_RELEASED = "asset_released"  # a held asset was run or released

# asset_events.kind -> the event kind it is (NEW_DATA of a source is no alert).
ASSET_KINDS = {
    "LATE": ASSET_LATE,
    "RECOVERED": ASSET_RECOVERED,
    "HELD": ASSET_HELD,
    "RELEASED": ASSET_RELEASED,
}
KINDS = (
    JOB_FAILED,
    CHAIN_FAILED,
    JOIN_FAILED,
    SCHEDULE_FIRE_FAILED,
    LEASE_EXPIRED,
    *ASSET_KINDS.values(),
)


@dataclass(frozen=True)
class Event:
    """One thing that happened, with what filters look at and what a notification says."""

    kind: str
    key: str  # unique per event: a rule is told once per key
    at: float
    job_type: str | None = None
    target_object: str | None = None
    schedule: str | None = None
    model: str | None = None  # the model's name, for an asset's event
    facts: Mapping[str, Any] = field(default_factory=dict)


def wants(rule: Mapping[str, Any], event: Event) -> bool:
    """Whether ``rule`` (a stored rule) asks to be told about ``event``.

    A filter that names something the event does not have (a job type for a schedule
    fire, a schedule for a chain submitted by hand, a model for a job) excludes it.
    """
    if event.kind not in rule["events"] or event.at < rule["active_since"]:
        return False
    exact = (("job_type", event.job_type), ("schedule", event.schedule), ("model", event.model))
    if any(rule.get(name) and rule[name] != found for name, found in exact):
        return False
    pattern = rule.get("target_object")
    return not pattern or _target_matches(pattern, event.target_object)


def _target_matches(pattern: str, target: str | None) -> bool:
    """Exact, or a prefix when the pattern ends with ``*`` (``155.*``)."""
    if target is None:
        return False
    if pattern.endswith("*"):
        return target.startswith(pattern[:-1])
    return target == pattern
