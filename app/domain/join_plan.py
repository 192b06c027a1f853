"""Finding the joins in a submitted tree and checking they are consistent.

All JOIN (or CF) nodes of one tree with the same key are one join; with
``parameters.batch`` the join spans submissions. Its next jobs may be written on one
node or identically on several: they are kept once, on the first node that has them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from app.domain import jsontext
from app.domain.join_rules import TRIGGERS
from app.domain.payload import JobSpec, PayloadError

JOIN_TYPES = frozenset({"JOIN", "CF"})
_PARAMETERS = {"expect", "trigger", "batch", "timeoutSeconds", "skipMessage"}
# In a node's skipMessage, replaced by how its branch ended ("failed", "skipped", ...).
OUTCOME_PLACEHOLDER = "{outcome}"
MAX_SKIP_MESSAGE = 1000


@dataclass
class JoinPlan:
    key: str
    batch: str | None
    trigger: str
    expected: int
    timeout_seconds: float | None
    nodes: list[JobSpec] = field(default_factory=list)
    owner: JobSpec | None = None
    next_jobs_digest: str | None = None
    join_id: int | None = None  # set when stored


def plan_joins(root: JobSpec) -> list[JoinPlan]:
    """Group the tree's JOIN nodes into joins; raise PayloadError naming bad paths.

    Drops duplicate copies of a join's next jobs from all but the owning node.
    """
    errors: dict[str, list[str]] = {}
    groups: dict[tuple[str, str | None], list[JobSpec]] = {}
    for node in root.walk():
        if node.job_type not in JOIN_TYPES:
            continue
        problems = _node_problems(node, node is root)
        if problems:
            errors[_at(node, "targetObject" if node is root else "parameters")] = problems
            continue
        batch = node.parameters.get("batch")
        groups.setdefault((str(node.target_id), batch), []).append(node)
    if errors:
        raise PayloadError("invalid join", errors)
    plans = [_plan(key, batch, nodes, errors) for (key, batch), nodes in groups.items()]
    if errors:
        raise PayloadError("invalid join", errors)
    return plans


def _node_problems(node: JobSpec, is_root: bool) -> list[str]:
    params = node.parameters
    problems: list[str] = []
    if is_root:
        problems.append("a JOIN must be a next job of the jobs it joins")
    if not node.target_id:
        problems.append('a JOIN needs a key: "<key>.JOIN"')
    unknown = sorted(set(params) - _PARAMETERS)
    if unknown:
        problems.append(f"unknown JOIN parameters {unknown}; allowed: {sorted(_PARAMETERS)}")
    expect = params.get("expect")
    if expect is not None and (
        isinstance(expect, bool) or not isinstance(expect, int) or not 1 <= expect <= 100_000
    ):
        problems.append("expect must be an integer from 1 to 100000")
    if params.get("trigger", "all_success") not in TRIGGERS:
        problems.append(f"trigger must be one of {list(TRIGGERS)}")
    batch = params.get("batch")
    if batch is not None and (
        not isinstance(batch, str) or not 1 <= len(batch) <= 255 or not batch.isprintable()
    ):
        problems.append("batch must be printable text of 1 to 255 characters")
    if batch is not None and expect is None:
        problems.append("a batch join spans submissions, so it needs an explicit expect")
    skip = params.get("skipMessage")
    if skip is not None and not (
        isinstance(skip, str) and 1 <= len(skip) <= MAX_SKIP_MESSAGE and skip.isprintable()
    ):
        problems.append(f"skipMessage must be printable text of 1 to {MAX_SKIP_MESSAGE} characters")
    timeout = params.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        problems.append("timeoutSeconds must be a positive number")
    return problems


def _plan(
    key: str, batch: str | None, nodes: list[JobSpec], errors: dict[str, list[str]]
) -> JoinPlan:
    settings: dict[str, tuple[Any, JobSpec]] = {}
    for node in nodes:
        for name in ("expect", "trigger", "timeoutSeconds"):
            if name not in node.parameters:
                continue
            value = node.parameters[name]
            seen = settings.setdefault(name, (value, node))
            if seen[0] != value:
                errors[_at(node, f"parameters.{name}")] = [
                    f"differs from {_at(seen[1], f'parameters.{name}')} of the same join {key!r}"
                ]
    owner: JobSpec | None = None
    digest: str | None = None
    for node in nodes:
        if not node.next_jobs:
            continue
        node_digest = next_jobs_digest(node)
        if owner is None:
            owner, digest = node, node_digest
        elif node_digest != digest:
            errors[_at(node, "nextJobs")] = [
                f"differs from {_at(owner, 'nextJobs')}: one join has one set of next jobs"
            ]
        else:
            node.next_jobs = []  # an identical copy: the owner's next jobs run once
    expected = settings.get("expect", (len(nodes), None))[0]
    if batch is None and expected > len(nodes):
        errors[_at(nodes[0], "parameters.expect")] = [
            f"expect {expected} but the tree has only {len(nodes)} {key!r} JOIN node(s)"
        ]
    return JoinPlan(
        key=key,
        batch=batch,
        trigger=settings.get("trigger", ("all_success", None))[0],
        expected=expected,
        timeout_seconds=settings.get("timeoutSeconds", (None, None))[0],
        nodes=nodes,
        owner=owner,
        next_jobs_digest=digest,
    )


def skip_reason(messages: list[tuple[str, str]]) -> str | None:
    """What a join that did not succeed tells the jobs it skips: the ``skipMessage`` of
    each branch that did not succeed, its outcome in place of ``{outcome}``, joined by
    "; ". ``messages`` is (skipMessage, outcome status) per such branch; None if empty."""
    said = [message.replace(OUTCOME_PLACEHOLDER, outcome.lower()) for message, outcome in messages]
    return "; ".join(dict.fromkeys(said)) or None


def next_jobs_digest(node: JobSpec) -> str:
    """A fingerprint of a node's next jobs, to compare them across nodes and submissions."""
    canonical = jsontext.dumps(
        [_canonical(child) for child in node.next_jobs], sort_keys=True, separators=(", ", ": ")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(spec: JobSpec) -> dict[str, Any]:
    """The node and its descendants as plain data, built in a loop (trees are deep)."""

    def own(node: JobSpec) -> dict[str, Any]:
        return {
            "targetObject": node.target_object,
            "parameters": node.parameters,
            "executeOnError": node.execute_on_error,
            "maxAttempts": node.max_attempts,
            "timeoutSeconds": node.timeout_seconds,
            "nextJobs": [],
        }

    root = own(spec)
    stack = [(spec, root)]
    while stack:
        node, out = stack.pop()
        for child in node.next_jobs:
            child_out = own(child)
            out["nextJobs"].append(child_out)
            stack.append((child, child_out))
    return root


def _at(node: JobSpec, name: str) -> str:
    return f"{node.path}.{name}" if node.path else name
