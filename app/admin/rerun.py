""" "Re-run chain from here": a new chain that is a copy of a job's subtree.

The copy has the same target objects, parameters, executeOnError, maxAttempts and
timeoutSeconds as the stored jobs (not their outcomes), is validated like any submission
(the job types must still be registered) and is stored as a new, independent chain whose
root is the copy of this job. The original chain is not touched; retry is the action that
continues an existing chain. JOIN nodes in the copy form the copy's own joins, counting
only the nodes inside the copy; a batch JOIN (``parameters.batch``) arrives again at its
stored batch join, where it is a late arrival.
"""

from __future__ import annotations

from typing import Any

from app.runtime import Runtime
from app.services.submit import SubmitService
from app.store import queries


class NothingToRerun(Exception):
    """No such job."""


def as_payload(tree: dict[str, Any]) -> dict[str, Any]:
    """A stored job tree (queries.get_tree) as the ChainedJobInfo that would submit it."""
    root = _node(tree)
    stack = [(tree, root)]
    while stack:
        stored, out = stack.pop()
        out["nextJobs"] = [_node(child) for child in stored["next_jobs"]]
        stack.extend(zip(stored["next_jobs"], out["nextJobs"], strict=True))
    return root


def rerun_from(rt: Runtime, job_id: int, role: str) -> int:
    """Submit the copy of ``job_id``'s subtree as ``role`` (through the submit service, as
    any submission); returns the new root's id.

    Raises NothingToRerun, PayloadError (the copy no longer validates; RoleDenied is one)
    or JoinConflict.
    """
    tree = queries.get_tree(rt.db, job_id)
    if tree is None:
        raise NothingToRerun(job_id)
    return SubmitService.for_runtime(rt).submit(as_payload(tree), role).root_id


def _node(job: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "targetObject": job["target_object"],
        "parameters": job["parameters"] or {},
        "executeOnError": bool(job["execute_on_error"]),
        "maxAttempts": job["max_attempts"],
    }
    if job["timeout_seconds"] is not None:
        node["timeoutSeconds"] = job["timeout_seconds"]
    return node
