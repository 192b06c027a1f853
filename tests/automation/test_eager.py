"""Eager reconciliation (no freshness policy) on both databases, ticks driven by hand:
a source change refreshes its descendants once; the same content again runs nothing; a
code version makes the asset and its descendants STALE and refreshes exactly them; an
unchanged data version stops propagation; a failing asset is held after 3 failed runs."""

from __future__ import annotations

from pathlib import Path

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from tests.automation.support import Model


def test_a_source_file_change_refreshes_its_descendants_once(
    runtime: Runtime, pool: WorkerPool, tmp_path: Path
) -> None:
    drop = tmp_path / "prices.csv"
    drop.write_text("v1")
    m = Model.create(runtime)
    m.asset(
        "prices",
        kind="source",
        observe={"type": "FILE_SHA256", "path": str(drop), "intervalSeconds": 0.001},
    )
    m.asset("clean", "prices", automation="reconcile")
    m.asset("report", "clean", automation="reconcile")
    m.asset("manual", "clean")  # automation off: never run by a tick
    loop = m.loop()
    first = loop.run_once()
    assert [r.requested for r in first] == [["clean", "report"]]
    m.settled()
    view = m.view()
    assert view["clean"]["status"] == "FRESH" and view["report"]["status"] == "FRESH"
    assert view["manual"]["status"] == "MISSING"
    # The next tick looks at the new versions (and requests nothing); then all is idle.
    assert [r.requested for r in loop.run_once()] == [[]]
    assert loop.run_once() == []
    drop.write_text("v1")  # the same content: the same version, nothing to do
    assert [r.requested for r in loop.run_once()] in ([], [[]])
    drop.write_text("v2")
    ticks = loop.run_once()
    assert [r.requested for r in ticks] == [["clean", "report"]]
    m.settled()
    assert [r.requested for r in loop.run_once()] == [[]]
    assert loop.run_once() == []
    assert m.requested() == ["clean", "report", "clean", "report"]
    reasons = [r["reason"] for r in m.refreshes("clean")]
    assert reasons == ["clean: new data from prices", "clean is missing"]
    assert m.refreshes("report")[0]["reason"] == "report: refreshes after clean in this run"


def test_a_code_version_change_refreshes_the_asset_and_its_descendants_only(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("a", automation="reconcile")
    m.asset("b", "a", automation="reconcile", code_version="1")
    m.asset("c", "b", automation="reconcile")
    loop = m.loop()
    assert [r.requested for r in loop.run_once()] == [["a", "b", "c"]]
    m.settled()
    m.change("b", code_version="2")
    view = m.view()
    assert view["a"]["status"] == "FRESH"
    assert view["b"]["status"] == "STALE"
    assert view["b"]["causes"] == [{"cause": "CODE", "asset": "b"}]
    assert view["c"]["causes"] == [{"cause": "DEPENDENCIES", "asset": "b"}]
    assert [r.requested for r in loop.run_once()] == [["b", "c"]]
    m.settled()
    assert {n: v["status"] for n, v in m.view().items()} == {
        "a": "FRESH",
        "b": "FRESH",
        "c": "FRESH",
    }


def test_an_unchanged_data_version_stops_propagation(runtime: Runtime, pool: WorkerPool) -> None:
    m = Model.create(runtime)
    same = {"targetObject": "x.NOOP", "parameters": {"result": {"dataVersion": "v1"}}}
    m.asset("a", job=same)
    m.asset("b", "a", automation="reconcile")
    loop = m.loop()
    m.run("a")
    m.settled()
    assert [r.requested for r in loop.run_once()] == [["b"]]
    m.settled()
    m.run("a")  # by hand, again: the same data version
    m.settled()
    assert m.view()["b"]["status"] == "FRESH"
    assert all(not r.requested for r in loop.run_once())
    assert m.requested() == ["b"]


def test_a_failing_asset_is_held_after_three_failed_runs(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("bad", automation="reconcile", job={"targetObject": "x.FAIL"})
    loop = m.loop()
    for _ in range(3):
        assert [r.requested for r in loop.run_once()] == [["bad"]]
        m.settled()
    view = m.view()["bad"]
    assert view["held"] is True and view["held_error"]
    assert all(not r.requested for r in loop.run_once())
    m.run("bad")  # someone runs it: the hold ends
    assert m.view()["bad"]["held"] is False
