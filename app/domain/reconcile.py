"""One reconciliation tick's decision: which assets to refresh now, and why (or why not).

Pure rules over an :class:`~app.domain.freshness.Assessment`; the store runs the tick
(``app/store/automation.py``) and turns the requests into one run. The rules:

- Only assets under ``reconcile``, not held and not refreshing now, are ever requested.
- **Eager** (no freshness policy): requested when missing, when its code version changed,
  or when an upstream has a data version it has not read; and every eager asset below an
  asset requested in the tick refreshes in the same run, once, in topological order.
- **Policy** (a freshness policy): requested only when the policy is at stake: as late as
  the deadline allows, less one tick and the asset's last run time (``lead``). A cron policy
  is served in the window before its tick. Its upstreams join the run only when the policy
  needs their new data: a ``reconcile`` upstream whose own data would leave the asset late
  within the lead. One refresh of an upstream so serves every policy it can, and an
  upstream is never refreshed for a policy its current data already meets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain.freshness import (
    CODE,
    DATA,
    JOB,
    MISSING,
    RECONCILE,
    SOURCE,
    Assessment,
    Lateness,
    duration,
    names_topological,
)


@dataclass(frozen=True)
class Standing:
    """What the store knows of an asset beyond its versions."""

    held: bool = False
    in_flight: bool = False
    run_seconds: float = 0.0  # the last refresh's run time: how early to start


@dataclass
class Evaluation:
    asset: str
    requested: bool
    reason: str | None
    conditions: list[dict[str, Any]]
    lateness: Lateness | None
    next_evaluation: float | None  # when the asset needs looking at again on its own

    def signature(self) -> str:
        """What decides whether an evaluation is worth storing: the result, not the
        numbers that move every tick."""
        parts = [str(self.requested)]
        for c in self.conditions:
            parts.append(f"{c['condition']}={c.get('passed')}:{c.get('status', '')}")
            parts.extend(f"{x['cause']}@{x['asset']}" for x in c.get("causes", ()))
        return "|".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "reason": self.reason, "conditions": self.conditions}


@dataclass
class TickPlan:
    requests: dict[str, str] = field(default_factory=dict)  # asset -> reason, topological
    evaluations: dict[str, Evaluation] = field(default_factory=dict)


def plan_tick(
    assessment: Assessment,
    standing: Mapping[str, Standing],
    candidates: Collection[str],
    now: float,
    tick_seconds: float,
) -> TickPlan:
    """Decide the tick over ``candidates`` (the assets that may have changed)."""
    assets = assessment.assets
    order = names_topological(assets)
    rank = {name: i for i, name in enumerate(order)}
    plan = TickPlan()
    busy = {name for name, s in standing.items() if s.in_flight}
    needed_by: dict[str, list[str]] = {}

    def refreshable(name: str) -> bool:
        a, s = assets[name], standing.get(name, Standing())
        return a.kind == JOB and a.automation == RECONCILE and not s.held and not s.in_flight

    for name in order:
        if name not in candidates:
            continue
        evaluation = _evaluate(
            assessment, name, standing.get(name, Standing()), now, tick_seconds, busy
        )
        plan.evaluations[name] = evaluation
        if not evaluation.requested or not refreshable(name):
            evaluation.requested = False
            continue
        plan.requests[name] = evaluation.reason or name
        policy = assets[name].policy
        if policy is not None:
            lead = tick_seconds + standing.get(name, Standing()).run_seconds
            for up in _needed_upstreams(assessment, name, policy.max_lag, now + lead, refreshable):
                needed_by.setdefault(up, []).append(name)
            if any(name in v for v in needed_by.values()):
                ups = sorted(u for u, v in needed_by.items() if name in v)
                plan.requests[name] += f"; needs new data from {', '.join(ups)}"
    for up, users in needed_by.items():
        if up not in plan.requests:
            policies = "; ".join(
                f"{u} ({assets[u].policy.describe()})"  # type: ignore[union-attr]
                for u in users
            )
            plan.requests[up] = f"{up}: new data needed by {policies}"
    for name in order:  # eager assets below what the tick refreshes ride along, once
        a = assets[name]
        if name in plan.requests or a.policy is not None or not refreshable(name):
            continue
        above = [u for u in a.upstreams if u in plan.requests]
        if above:
            plan.requests[name] = f"{name}: refreshes after {', '.join(sorted(above))} in this run"
    plan.requests = dict(sorted(plan.requests.items(), key=lambda item: rank[item[0]]))
    for name, reason in plan.requests.items():
        found = plan.evaluations.get(name)
        if found is None:
            found = _evaluate(assessment, name, standing.get(name, Standing()), now, tick_seconds)
            plan.evaluations[name] = found
        found.requested, found.reason = True, reason
    return plan


def _needed_upstreams(
    assessment: Assessment,
    name: str,
    max_lag: float,
    finish_by: float,
    refreshable: Any,
) -> list[str]:
    """Upstreams (transitively) whose current data would leave ``name`` late by
    ``finish_by``, as far as reconciliation may refresh them."""
    found: list[str] = []
    stack = list(assessment.assets[name].upstreams)
    seen: set[str] = set()
    while stack:
        up = stack.pop()
        if up in seen or not refreshable(up):
            continue
        seen.add(up)
        since = assessment.missing_since(up)
        if since is not None and since + max_lag <= finish_by:
            found.append(up)
            stack.extend(assessment.assets[up].upstreams)
    return found


def _evaluate(
    assessment: Assessment,
    name: str,
    standing: Standing,
    now: float,
    tick_seconds: float,
    busy: Collection[str] = (),
) -> Evaluation:
    """The asset's own conditions; ``requested`` says whether it wants a refresh itself."""
    asset = assessment.assets[name]
    status = assessment.status(name)
    conditions: list[dict[str, Any]] = [
        {
            "condition": "status",
            "status": status.status,
            "causes": [c.as_json() for c in status.causes],
            "passed": status.status != "FRESH",
        }
    ]
    if asset.kind == SOURCE:
        conditions.append({"condition": "observed, not refreshed", "passed": False})
        return Evaluation(name, False, None, conditions, None, None)
    lateness = assessment.lateness(name, now)
    blockers = [
        ("automation is reconcile", asset.automation == RECONCILE, asset.automation),
        ("not held", not standing.held, standing.held),
        ("not refreshing now", not standing.in_flight, standing.in_flight),
    ]
    conditions += [{"condition": c, "passed": ok, "value": v} for c, ok, v in blockers]
    if asset.policy is None:
        reason = _eager_reason(assessment, name, busy)
        conditions.append(
            {"condition": "missing, new code or new upstream data", "passed": reason is not None}
        )
        return Evaluation(name, reason is not None, reason, conditions, lateness, None)
    assert lateness is not None
    policy = asset.policy
    lead = tick_seconds + standing.run_seconds
    due_at = _due_at(lateness, policy.max_lag, lead, cron=policy.cron is not None)
    due = status.status == MISSING or (due_at is not None and due_at <= now)
    conditions.append(
        {
            "condition": "freshness policy at stake",
            "passed": due,
            "value": {
                "maximumLagSeconds": policy.max_lag,
                "lagSeconds": None
                if lateness.missing_since is None
                else max(0.0, now - lateness.missing_since),
                "deadline": lateness.deadline,
                "dueAt": due_at,
                "late": lateness.late,
            },
        }
    )
    reason = None
    if due:
        if status.status == MISSING:
            reason = f"{name} is missing ({policy.describe()})"
        elif lateness.late:
            reason = f"{name} late by {duration(lateness.late_by)} against {policy.describe()}"
        else:
            left = duration(max(0.0, (lateness.deadline or now) - now))
            reason = f"{name} would be late in {left} against {policy.describe()}"
    upcoming = [t for t in (due_at, lateness.deadline) if t is not None and t > now]
    return Evaluation(name, due, reason, conditions, lateness, min(upcoming, default=None))


def _due_at(lateness: Lateness, max_lag: float, lead: float, cron: bool) -> float | None:
    """When a refresh must start for the policy: ``lead`` before the deadline (for a cron,
    not before the data the tick needs has arrived: the deadline less the lag)."""
    if lateness.deadline is None:
        return None
    due = lateness.deadline - lead
    return max(due, lateness.deadline - max_lag) if cron else due


def _eager_reason(assessment: Assessment, name: str, busy: Collection[str]) -> str | None:
    """Why an eager asset wants a refresh; new data from an upstream refreshing now waits
    for that refresh (it will bring newer data still)."""
    asset = assessment.assets[name]
    status = assessment.status(name)
    if status.status == MISSING:
        return f"{name} is missing"
    if any(c.cause == CODE and c.asset == name for c in status.causes):
        return f"{name}: code version changed to {asset.code_version!r}"
    fresh = sorted(c.asset for c in status.causes if c.cause == DATA and c.asset not in busy)
    if fresh:
        return f"{name}: new data from {', '.join(fresh)}"
    return None
