"""Fan-in: joins fire exactly once, for every trigger rule, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.join_plan import plan_joins
from app.domain.payload import Limits, PayloadError, parse_tree
from app.runner.worker_pool import WorkerPool
from app.store import actions, join_reads, join_setup, joins, submission
from app.store.database import Database
from jobs import REGISTRY, JobContext, JobFailed, job_type
from tests.helpers import flatten, wait_for_chain, wait_until


def spec(payload: dict[str, Any]) -> Any:
    return parse_tree(payload, Limits(), lambda n: n in REGISTRY)


def submit(db: Database, payload: dict[str, Any]) -> int:
    tree = spec(payload)
    return submission.submit(db, tree, plan_joins(tree))


def fan_in(parents: list[str], trigger: str | None = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = dict(extra)
    if trigger:
        params["trigger"] = trigger
    branches = []
    for index, parent in enumerate(parents):
        node: dict[str, Any] = {"targetObject": "profit.JOIN", "parameters": params}
        if index == len(parents) - 1:
            node["nextJobs"] = [{"targetObject": "B.NOOP"}]
        target, _, kind = parent.partition(":")
        branches.append({"targetObject": f"{target}.{kind or 'NOOP'}", "nextJobs": [node]})
    return {"targetObject": "A.NOOP", "nextJobs": branches}


def by_target(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["target_object"]: n for n in flatten(tree) if n["job_type"] != "JOIN"}


def the_join(db: Database) -> dict[str, Any]:
    found = join_reads.list_joins(db, key="profit", batch=None)
    assert len(found) == 1
    return found[0]


def test_all_success_fires_once_when_every_parent_finished(db: Database, pool: WorkerPool) -> None:
    root = submit(db, fan_in(["A1", "A2", "A3"]))
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "FINISHED"
    join = the_join(db)
    assert join["state"] == "FIRED"
    assert join["expected"] == 3
    assert len(join["arrivals"]) == 3
    assert join["started_job_ids"] == [by_target(tree)["B.NOOP"]["id"]]
    nodes = [n for n in flatten(tree) if n["job_type"] == "JOIN"]
    # Every JOIN node ends with the join's decision; the last arrival decided it.
    assert [n["status"] for n in nodes] == ["FINISHED"] * 3
    messages = sorted(n["message"] for n in nodes)
    assert messages[0] == "arrival 3 of 3 at join 'profit' (parent FINISHED); join FIRED"
    assert messages[1:] == ["join 'profit' FIRED"] * 2


def test_all_success_skips_next_jobs_when_a_parent_failed(db: Database, pool: WorkerPool) -> None:
    root = submit(db, fan_in(["A1", "A2:FAIL", "A3"]))
    tree = wait_for_chain(db, root)
    b = by_target(tree)["B.NOOP"]
    assert b["status"] == "SKIPPED"
    assert "join 'profit' did not succeed" in b["message"]
    assert the_join(db)["state"] == "FAILED"


def test_all_done_fires_whatever_the_outcomes(db: Database, pool: WorkerPool) -> None:
    root = submit(db, fan_in(["A1:FAIL", "A2:FAIL", "A3"], trigger="all_done"))
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "FINISHED"


@pytest.mark.parametrize(
    ("trigger", "parents", "b_status", "state"),
    [
        ("one_success", ["A1:FAIL", "A2", "A3:FAIL"], "FINISHED", "FIRED"),
        ("one_success", ["A1:FAIL", "A2:FAIL", "A3:FAIL"], "SKIPPED", "FAILED"),
        ("one_failed", ["A1", "A2:FAIL", "A3"], "FINISHED", "FIRED"),
        ("one_failed", ["A1", "A2", "A3"], "SKIPPED", "FAILED"),
    ],
)
def test_one_success_and_one_failed(
    db: Database, pool: WorkerPool, trigger: str, parents: list[str], b_status: str, state: str
) -> None:
    root = submit(db, fan_in(parents, trigger=trigger))
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == b_status
    join = the_join(db)
    assert join["state"] == state
    wait_until(lambda: len(the_join(db)["arrivals"]) == 3, what="all arrivals recorded")


def test_error_handler_next_job_starts_when_join_failed(db: Database, pool: WorkerPool) -> None:
    payload = fan_in(["A1", "A2:FAIL"])
    payload["nextJobs"][1]["nextJobs"][0]["nextJobs"] = [
        {"targetObject": "B.NOOP", "executeOnError": True}
    ]
    root = submit(db, payload)
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "FINISHED"


def test_skipped_and_cancelled_branches_still_arrive(db: Database, pool: WorkerPool) -> None:
    payload = {
        "targetObject": "A.NOOP",
        "nextJobs": [
            {"targetObject": "A1.NOOP", "nextJobs": [{"targetObject": "profit.JOIN"}]},
            {
                "targetObject": "A2.FAIL",
                "nextJobs": [
                    {"targetObject": "A2b.NOOP", "nextJobs": [{"targetObject": "profit.JOIN"}]}
                ],
            },
            {
                "targetObject": "A3.NOOP",
                "nextJobs": [
                    {
                        "targetObject": "profit.JOIN",
                        "parameters": {"trigger": "all_done"},
                        "nextJobs": [{"targetObject": "B.NOOP"}],
                    }
                ],
            },
        ],
    }
    root = submit(db, payload)
    tree = wait_for_chain(db, root)
    targets = by_target(tree)
    assert targets["A2b.NOOP"]["status"] == "SKIPPED"
    assert targets["B.NOOP"]["status"] == "FINISHED"
    outcomes = sorted(a["parent_outcome"] for a in the_join(db)["arrivals"])
    assert outcomes == ["FINISHED", "FINISHED", "SKIPPED"]


def test_explicit_expect_fires_on_that_arrival_and_later_ones_fire_nothing(
    db: Database, pool: WorkerPool
) -> None:
    root = submit(db, fan_in(["A1", "A2", "A3"], trigger="all_done", expect=2))
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "FINISHED"
    join = wait_until(lambda: (j := the_join(db)) and len(j["arrivals"]) == 3 and j)
    assert join["state"] == "FIRED"
    assert len(join["started_job_ids"]) == 1


def test_conflicting_next_jobs_are_rejected_naming_both_paths() -> None:
    payload = fan_in(["A1", "A2"])
    payload["nextJobs"][0]["nextJobs"][0]["nextJobs"] = [{"targetObject": "C.NOOP"}]
    with pytest.raises(PayloadError) as caught:
        plan_joins(spec(payload))
    assert caught.value.details == {
        "nextJobs[1].nextJobs[0].nextJobs": [
            "differs from nextJobs[0].nextJobs[0].nextJobs: one join has one set of next jobs"
        ]
    }


def test_identical_next_jobs_on_several_nodes_run_once(db: Database, pool: WorkerPool) -> None:
    payload = fan_in(["A1", "A2", "A3"])
    for branch in payload["nextJobs"]:
        branch["nextJobs"][0]["nextJobs"] = [{"targetObject": "B.NOOP"}]
    root = submit(db, payload)
    tree = wait_for_chain(db, root)
    assert [n["status"] for n in flatten(tree) if n["target_object"] == "B.NOOP"] == ["FINISHED"]


def test_cross_submission_batch_join(db: Database, pool: WorkerPool) -> None:
    def monthly(load: str, with_next: bool) -> dict[str, Any]:
        node: dict[str, Any] = {
            "targetObject": "profit.JOIN",
            "parameters": {"batch": "2024-03", "expect": 2},
        }
        if with_next:
            node["nextJobs"] = [{"targetObject": "report.NOOP"}]
        return {"targetObject": f"{load}.NOOP", "nextJobs": [node]}

    sales = submit(db, monthly("sales", with_next=True))
    found = wait_until(
        lambda: (
            (j := join_reads.list_joins(db, key="profit", batch="2024-03"))
            and j[0]["arrivals"]
            and j
        )
    )
    assert found[0]["state"] == "WAITING"
    assert len(found[0]["arrivals"]) == 1
    expenses = submit(db, monthly("expenses", with_next=True))  # identical next jobs: run once
    wait_for_chain(db, expenses)
    tree = wait_for_chain(db, sales)
    report = [n for n in flatten(tree) if n["target_object"] == "report.NOOP"]
    assert [n["status"] for n in report] == ["FINISHED"]
    assert join_reads.list_joins(db, key="profit", batch="2024-03")[0]["state"] == "FIRED"


def test_batch_join_with_different_next_jobs_is_a_conflict(db: Database) -> None:
    def payload(report: str) -> dict[str, Any]:
        return {
            "targetObject": "x.NOOP",
            "nextJobs": [
                {
                    "targetObject": "profit.JOIN",
                    "parameters": {"batch": "b1", "expect": 2},
                    "nextJobs": [{"targetObject": f"{report}.NOOP"}],
                }
            ],
        }

    submit(db, payload("one"))
    with pytest.raises(join_setup.JoinConflict):
        submit(db, payload("two"))


def test_join_timeout_fails_and_skips_next_jobs(db: Database, pool: WorkerPool) -> None:
    payload = {
        "targetObject": "x.NOOP",
        "nextJobs": [
            {
                "targetObject": "profit.JOIN",
                "parameters": {"batch": "late", "expect": 2, "timeoutSeconds": 0.2},
                "nextJobs": [{"targetObject": "B.NOOP"}],
            }
        ],
    }
    root = submit(db, payload)
    wait_until(lambda: joins.expire(db) or the_join(db)["state"] != "WAITING", timeout=5)
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "SKIPPED"
    join = the_join(db)
    assert join["state"] == "FAILED"
    assert join["message"] == "timed out after 0.2 s"


@job_type("FLAKY")
def flaky(ctx: JobContext) -> None:
    """Fails its first attempt, succeeds after a retry."""
    if ctx.attempt == 1:
        raise JobFailed("first attempt fails")


def test_retried_parent_arrives_again_and_the_join_fires(db: Database, pool: WorkerPool) -> None:
    root = submit(db, fan_in(["A1:FLAKY", "A2"]))
    tree = wait_for_chain(db, root)
    assert by_target(tree)["B.NOOP"]["status"] == "SKIPPED"
    assert the_join(db)["state"] == "FAILED"

    actions.retry(db, by_target(tree)["A1.FLAKY"]["id"])
    tree = wait_for_chain(db, root)
    assert by_target(tree)["A1.FLAKY"]["attempt"] == 2
    assert by_target(tree)["B.NOOP"]["status"] == "FINISHED"
    join = the_join(db)
    assert join["state"] == "FIRED"
    assert sorted(a["parent_outcome"] for a in join["arrivals"]) == ["FINISHED", "FINISHED"]


def test_retry_rearms_joins_below_the_jobs_it_revives(db: Database, pool: WorkerPool) -> None:
    payload = {
        "targetObject": "A.NOOP",
        "nextJobs": [
            {
                "targetObject": "X.FLAKY",
                "nextJobs": [
                    {"targetObject": "Y.NOOP", "nextJobs": [{"targetObject": "profit.JOIN"}]}
                ],
            },
            {
                "targetObject": "A2.NOOP",
                "nextJobs": [
                    {"targetObject": "profit.JOIN", "nextJobs": [{"targetObject": "B.NOOP"}]}
                ],
            },
        ],
    }
    root = submit(db, payload)
    tree = wait_for_chain(db, root)
    assert by_target(tree)["Y.NOOP"]["status"] == "SKIPPED"
    assert by_target(tree)["B.NOOP"]["status"] == "SKIPPED"

    actions.retry(db, by_target(tree)["X.FLAKY"]["id"])
    tree = wait_for_chain(db, root)
    assert {t: n["status"] for t, n in by_target(tree).items()} == dict.fromkeys(
        ["A.NOOP", "X.FLAKY", "Y.NOOP", "A2.NOOP", "B.NOOP"], "FINISHED"
    )
    assert sorted(a["parent_outcome"] for a in the_join(db)["arrivals"]) == [
        "FINISHED",
        "FINISHED",
    ]
