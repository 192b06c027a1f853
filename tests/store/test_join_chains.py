"""Joins of joins: a join's decision is what its next join hears, whatever path it took.

Tree used throughout (k2 expects 2 arrivals: one after k1, one after c)::

    R ─┬─ a1 ─ k1
       ├─ a2 ─ k1 ─ k2 ─ X
       └─ c  ─ k2
"""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.statuses import TRANSITIONS, Transition, sources, target
from app.runner.worker_pool import WorkerPool
from app.store import actions, join_reads, joins, queries
from app.store.database import Database
from tests.helpers import flatten, wait_for_chain, wait_until
from tests.store.test_joins import submit


def two_joins(
    a2: str = "NOOP", k1: dict[str, Any] | None = None, **a2_params: Any
) -> dict[str, Any]:
    k1_params = k1 or {}
    return {
        "targetObject": "R.NOOP",
        "nextJobs": [
            {
                "targetObject": "a1.NOOP",
                "nextJobs": [{"targetObject": "k1.JOIN", "parameters": k1_params}],
            },
            {
                "targetObject": f"a2.{a2}",
                "parameters": a2_params,
                "nextJobs": [
                    {
                        "targetObject": "k1.JOIN",
                        "parameters": k1_params,
                        "nextJobs": [
                            {"targetObject": "k2.JOIN", "nextJobs": [{"targetObject": "X.NOOP"}]}
                        ],
                    }
                ],
            },
            {"targetObject": "c.NOOP", "nextJobs": [{"targetObject": "k2.JOIN"}]},
        ],
    }


def job(tree: dict[str, Any], target: str) -> dict[str, Any]:
    [found] = [n for n in flatten(tree) if n["target_object"] == target]
    return found


def join_nodes(tree: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [n for n in flatten(tree) if n["target_object"] == f"{key}.JOIN"]


def join_state(db: Database, key: str) -> dict[str, Any]:
    [found] = join_reads.list_joins(db, key=key, batch=None)
    return found


def arrivals(db: Database, key: str) -> list[str]:
    return sorted(a["parent_outcome"] for a in join_state(db, key)["arrivals"])


def test_a_failed_join_skips_what_follows_the_next_join(db: Database, pool: WorkerPool) -> None:
    root = submit(db, two_joins(a2="FAIL"))
    tree = wait_for_chain(db, root)
    assert join_state(db, "k1")["state"] == "FAILED"
    assert [n["status"] for n in join_nodes(tree, "k1")] == ["FAILED", "FAILED"]
    # k2 heard k1's decision, not the status of the node that carries k1's next jobs.
    assert arrivals(db, "k2") == ["FAILED", "FINISHED"]
    assert join_state(db, "k2")["state"] == "FAILED"
    x = job(tree, "X.NOOP")
    assert x["status"] == "SKIPPED"
    assert x["message"] == "skipped: join 'k2' did not succeed (all_success)"


def test_a_join_decided_early_releases_the_next_join_once(db: Database, pool: WorkerPool) -> None:
    """one_success fires on a1; the node that carries k1's next jobs arrives a second later."""
    root = submit(db, two_joins(a2="SLEEP", k1={"trigger": "one_success"}, seconds=1))
    tree = wait_for_chain(db, root)
    assert job(tree, "X.NOOP")["status"] == "FINISHED"
    assert join_state(db, "k1")["state"] == "FIRED"
    assert arrivals(db, "k1") == ["FINISHED", "FINISHED"]  # the late one arrived as well
    assert [n["status"] for n in join_nodes(tree, "k1")] == ["FINISHED", "FINISHED"]
    assert join_state(db, "k2")["state"] == "FIRED"


def test_a_timed_out_join_skips_what_follows_the_next_join(db: Database, pool: WorkerPool) -> None:
    root = submit(db, two_joins(a2="SLEEP", k1={"timeoutSeconds": 0.2}, seconds=2))
    wait_until(lambda: joins.expire(db) and join_state(db, "k1")["state"] != "WAITING", timeout=10)
    tree = wait_for_chain(db, root)
    assert join_state(db, "k1")["state"] == "FAILED"
    assert join_state(db, "k1")["message"] == "timed out after 0.2 s"
    assert arrivals(db, "k2") == ["FAILED", "FINISHED"]
    assert job(tree, "X.NOOP")["status"] == "SKIPPED"
    # The late branch still arrives, and its node ends with the decision.
    assert [n["status"] for n in join_nodes(tree, "k1")] == ["FAILED", "FAILED"]


def test_a_cancelled_upstream_join_arrives_cancelled(
    db: Database, request: pytest.FixtureRequest
) -> None:
    root = submit(db, two_joins())
    tree = queries.get_tree(db, root)
    assert tree is not None
    for branch in ("a1.NOOP", "a2.NOOP"):  # both branches of k1, before any worker runs
        assert actions.cancel(db, job(tree, branch)["id"]).value == "CANCELLED"
    request.getfixturevalue("pool")
    tree = wait_for_chain(db, root)
    assert join_state(db, "k1")["state"] == "CANCELLED"
    assert [n["status"] for n in join_nodes(tree, "k1")] == ["CANCELLED", "CANCELLED"]
    assert arrivals(db, "k2") == ["CANCELLED", "FINISHED"]
    assert join_state(db, "k2")["state"] == "FAILED"
    assert job(tree, "X.NOOP")["status"] == "SKIPPED"


def test_a_retried_parent_two_joins_up_finishes_the_chain(db: Database, pool: WorkerPool) -> None:
    root = submit(db, two_joins(a2="FLAKY"))
    tree = wait_for_chain(db, root)
    assert job(tree, "X.NOOP")["status"] == "SKIPPED"
    assert join_state(db, "k2")["state"] == "FAILED"

    actions.retry(db, job(tree, "a2.FLAKY")["id"])
    tree = wait_for_chain(db, root)
    assert job(tree, "a2.FLAKY")["attempt"] == 2
    assert job(tree, "X.NOOP")["status"] == "FINISHED"
    assert (join_state(db, "k1")["state"], join_state(db, "k2")["state"]) == ("FIRED", "FIRED")
    assert arrivals(db, "k1") == ["FINISHED", "FINISHED"]
    assert arrivals(db, "k2") == ["FINISHED", "FINISHED"]
    nodes = join_nodes(tree, "k1") + join_nodes(tree, "k2")
    assert [n["status"] for n in nodes] == ["FINISHED"] * 4


def test_a_join_node_cannot_be_retried(db: Database, pool: WorkerPool) -> None:
    root = submit(db, two_joins(a2="FAIL"))
    tree = wait_for_chain(db, root)
    with pytest.raises(actions.Conflict, match="JOIN node"):
        actions.retry(db, join_nodes(tree, "k1")[0]["id"])


def test_every_event_follows_the_transition_table(db: Database, pool: WorkerPool) -> None:
    """Hot path or not, each event row is a move the table allows, logged with its reason;
    a JOIN node released by a finished parent is logged as an arrival like any other."""
    root = submit(db, two_joins(a2="FLAKY"))
    tree = wait_for_chain(db, root)
    actions.retry(db, job(tree, "a2.FLAKY")["id"])
    tree = wait_for_chain(db, root)
    moves = {t.value: t for t in TRANSITIONS}
    seen: set[Transition] = set()
    for node in flatten(tree):
        for event in queries.get_events(db, node["id"]):
            transition = moves.get(event["reason"])
            if transition is None:
                continue  # a submission, or a note on an unchanged status
            seen.add(transition)
            assert event["to_status"] == target(transition).value, event
            assert event["from_status"] in {s.value for s in sources(transition)}, event
    expected = {Transition.ARRIVE, Transition.AWAIT_JOIN, Transition.JOIN_FIRED}
    assert expected | {Transition.JOIN_FAILED, Transition.REARM, Transition.REOPEN} <= seen
    for node in join_nodes(tree, "k1") + join_nodes(tree, "k2"):
        reasons = [e["reason"] for e in queries.get_events(db, node["id"])]
        assert Transition.PARENT_FINISHED.value not in reasons, reasons
