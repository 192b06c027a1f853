"""Chains run end to end through real workers, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from app.domain.payload import Limits, parse_tree
from app.runner.worker_pool import WorkerPool
from app.store import queries, submission
from app.store.database import Database
from jobs import REGISTRY
from tests.helpers import flatten, wait_for_chain


def submit(db: Database, payload: dict[str, Any]) -> int:
    return submission.submit(db, parse_tree(payload, Limits(), lambda n: n in REGISTRY))


def statuses(tree: dict[str, Any]) -> dict[str, str]:
    return {node["target_object"]: node["status"] for node in flatten(tree)}


def test_finished_parent_starts_all_next_jobs(db: Database, pool: WorkerPool) -> None:
    root = submit(
        db,
        {
            "targetObject": "155.NOOP",
            "nextJobs": [
                {"targetObject": "a.NOOP", "nextJobs": [{"targetObject": "c.NOOP"}]},
                {"targetObject": "b.NOOP"},
            ],
        },
    )
    tree = wait_for_chain(db, root)
    assert set(statuses(tree).values()) == {"FINISHED"}


def test_failed_parent_skips_subtree_and_runs_error_handlers(
    db: Database, pool: WorkerPool
) -> None:
    root = submit(
        db,
        {
            "targetObject": "155.FAIL",
            "parameters": {"message": "price list broken"},
            "nextJobs": [
                {"targetObject": "38.NOOP", "executeOnError": True},
                {"targetObject": "39.NOOP", "nextJobs": [{"targetObject": "40.NOOP"}]},
            ],
        },
    )
    tree = wait_for_chain(db, root)
    assert statuses(tree) == {
        "155.FAIL": "FAILED",
        "38.NOOP": "FINISHED",
        "39.NOOP": "SKIPPED",
        "40.NOOP": "SKIPPED",
    }
    by_target = {n["target_object"]: n for n in flatten(tree)}
    assert by_target["155.FAIL"]["message"] == "price list broken"
    assert by_target["40.NOOP"]["message"] == f"skipped: job {root} (155.FAIL) failed"
    assert by_target["40.NOOP"]["blocked_by"] == root
    events = queries.get_events(db, by_target["40.NOOP"]["id"])
    assert events is not None
    assert [e["to_status"] for e in events] == ["WAITING_FOR_PARENT", "SKIPPED"]
