"""The battery's submissions: single jobs, chains and joins of BATTERY jobs.

Every job gets ``maxAttempts`` 100 (the most a payload may ask for), so a job interrupted by
the battery's crashes always has attempts left: at the end every accepted job must be
FINISHED, and anything else is a lost job. Each submission's root carries a unique label,
which is also its ``Idempotency-Key``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

ATTEMPTS = 100


@dataclass(frozen=True)
class Submission:
    label: str
    payload: dict[str, Any]
    jobs: int  # nodes in the payload
    joins: int


def _node(
    name: str, ms: float, next_jobs: list[dict[str, Any]] | None = None, abortable: bool = True
) -> dict[str, Any]:
    return {
        "targetObject": f"{name}.BATTERY",
        "parameters": {"ms": ms} if abortable else {"ms": ms, "abortable": False},
        "maxAttempts": ATTEMPTS,
        "nextJobs": next_jobs or [],
    }


def single(label: str, ms: float = 0) -> Submission:
    return Submission(label, _node(label, ms), 1, 0)


def chain(label: str, length: int = 5, ms: float = 0) -> Submission:
    """``label`` -> ``label.2`` -> ... -> ``label.<length>``."""
    payload: dict[str, Any] | None = None
    for position in range(length, 0, -1):
        name = label if position == 1 else f"{label}.{position}"
        payload = _node(name, ms, [payload] if payload else [])
    assert payload is not None
    return Submission(label, payload, length, 0)


def join(label: str, width: int = 20, ms: float = 0) -> Submission:
    """Root -> ``width`` branches -> one JOIN node each -> ``after`` once all arrived.

    ``2 * width + 2`` jobs: the root, the branches, their JOIN nodes and the continuation.
    """

    def arrival(last: bool) -> dict[str, Any]:
        node: dict[str, Any] = {
            "targetObject": f"{label}.JOIN",
            "executeOnError": True,
            "maxAttempts": ATTEMPTS,
        }
        if last:
            node["nextJobs"] = [_node(f"{label}.after", ms)]
        return node

    branches = [
        {**_node(f"{label}.b{i}", ms), "nextJobs": [arrival(i == width - 1)]} for i in range(width)
    ]
    return Submission(label, _node(label, ms, branches), 2 * width + 2, 1)


def wide(label: str, width: int, ms: float = 0) -> Submission:
    """A root whose ``width`` children are all released by one commit: a claiming race."""
    children = [_node(f"{label}.{i}", ms) for i in range(width)]
    return Submission(label, _node(label, ms, children), width + 1, 0)


def slow_then_next(label: str, ms: float) -> Submission:
    """A job that sleeps ``ms`` through any abort request, then ``<label>.next``."""
    return Submission(label, _node(label, ms, [_node(f"{label}.next", 0)], abortable=False), 2, 0)


def mix(total: int, rng: random.Random, ms: float = 0, prefix: str = "m") -> list[Submission]:
    """About ``total`` jobs: 60% single jobs, 30% chains of 5, 10% joins of 20, shuffled."""
    singles = round(total * 0.6)
    chains = max(1, round(total * 0.3 / 5))
    joins = max(1, round(total * 0.1 / 42))
    work = [single(f"{prefix}s{i}", ms) for i in range(singles)]
    work += [chain(f"{prefix}c{i}", 5, ms) for i in range(chains)]
    work += [join(f"{prefix}j{i}", 20, ms) for i in range(joins)]
    rng.shuffle(work)
    return work
