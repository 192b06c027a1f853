"""A run's chain, pure: the diamond's joins, in-flight arrivals, batches, messages."""

from __future__ import annotations

from app.domain import runs
from app.domain.join_plan import plan_joins, skip_reason
from app.domain.payload import Limits, parse_tree

ASSETS = {n: runs.Asset(i, n, {"targetObject": f"{n}.NOOP"}) for i, n in enumerate("abcd", 1)}
DIAMOND = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


def test_a_diamond_is_one_tree_with_one_join_per_asset_with_upstreams() -> None:
    chosen = runs.refresh_set(ASSETS, DIAMOND, ["a"], downstream=True)
    plan = runs.plan_refresh(7, ASSETS, DIAMOND, chosen, "run-5", {})
    root = parse_tree(plan.payload, Limits(), lambda _: True)
    joins = {(p.key, p.batch): p for p in plan_joins(root)}
    assert {k: (p.expected, len(p.nodes)) for k, p in joins.items()} == {
        ("m7a2", "run-5"): (1, 1),
        ("m7a3", "run-5"): (1, 1),
        ("m7a4", "run-5"): (2, 2),
    }
    assert sorted(plan.paths.values()) == ["a", "b", "c", "d"]
    assert plan.waits_for["d"] == [("b", "run-5"), ("c", "run-5")]
    assert runs.refresh_set(ASSETS, DIAMOND, ["b"], downstream=False) == ["b"]


def test_an_upstream_refreshing_elsewhere_adds_an_arrival_below_its_job() -> None:
    plan = runs.plan_refresh(7, ASSETS, DIAMOND, ["d"], "run-6", {"b": ("run-5", 42)})
    (wait,) = plan.external
    assert (wait.asset, wait.upstream, wait.job_id) == ("d", "b", 42)
    # b's arrival plus the run's own start carrying d.
    assert wait.node["parameters"]["expect"] == 2
    assert "'b' {outcome} in batch run-5" in wait.node["parameters"]["skipMessage"]
    assert plan.waits_for["d"] == [("b", "run-5")]


def test_a_batch_run_creates_each_downstream_job_once() -> None:
    first = runs.plan_batch(7, ASSETS, DIAMOND, ["a"], "2024-03", {})
    assert first.assets == ["a", "b", "c", "d"] and len(first.paths) == 4
    again = runs.plan_batch(7, ASSETS, DIAMOND, ["b"], "2024-03", {"d": 9}, ["b"])
    assert again.assets == ["b"] and list(again.paths.values()) == ["b"]


def test_messages() -> None:
    assert skip_reason([("upstream 'b' {outcome}", "FAILED")]) == "upstream 'b' failed"
    assert skip_reason([]) is None
    assert runs.waiting_message([("x", "b1"), ("y", "b1")]) == (
        "waiting for 'x' in batch b1, 'y' in batch b1"
    )
    assert runs.waiting_message([]) is None
