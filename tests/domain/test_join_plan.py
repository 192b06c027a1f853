"""join_plan at depth: the next-jobs digest of a JOIN with a deep chain below it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from app.domain.join_plan import next_jobs_digest, plan_joins
from app.domain.payload import JobSpec, Limits, parse_tree

KNOWN = {"NOOP", "JOIN"}


def chain(links: int) -> dict[str, Any]:
    node: dict[str, Any] = {"targetObject": f"{links}.NOOP"}
    for level in range(links - 1, 0, -1):
        node = {"targetObject": f"{level}.NOOP", "nextJobs": [node]}
    return node


def joined(below: dict[str, Any]) -> JobSpec:
    """Two parents whose copies of the k.JOIN node carry the same chain below it."""
    join = {"targetObject": "k.JOIN", "nextJobs": [below]}
    body = {
        "targetObject": "root.NOOP",
        "nextJobs": [
            {"targetObject": "a.NOOP", "nextJobs": [join]},
            {"targetObject": "b.NOOP", "nextJobs": [join]},
        ],
    }
    return parse_tree(body, Limits(), KNOWN.__contains__)


def test_the_digest_is_the_same_text_as_before() -> None:
    """Batch joins compare digests across submissions: stored ones must still match."""
    node = joined(chain(3)).next_jobs[0].next_jobs[0]

    def canonical(spec: JobSpec) -> dict[str, Any]:  # the recursive original
        return {
            "targetObject": spec.target_object,
            "parameters": spec.parameters,
            "executeOnError": spec.execute_on_error,
            "maxAttempts": spec.max_attempts,
            "timeoutSeconds": spec.timeout_seconds,
            "nextJobs": [canonical(child) for child in spec.next_jobs],
        }

    before = json.dumps([canonical(c) for c in node.next_jobs], sort_keys=True)
    assert next_jobs_digest(node) == hashlib.sha256(before.encode()).hexdigest()


def test_a_join_with_a_1000_link_chain_below_plans() -> None:
    root = joined(chain(1_000))
    (plan,) = plan_joins(root)
    assert plan.expected == 2 and plan.owner is not None
    # The second copy's identical chain is dropped: it runs once, under the owner.
    assert sorted(len(node.next_jobs) for node in plan.nodes) == [0, 1]
    assert plan.next_jobs_digest is not None
