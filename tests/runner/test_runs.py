"""Runs of a model on real workers, SQLite and PostgreSQL: dependency order, exactly-once
fan-in, skips naming the failed upstream, retries continuing a run, batches across runs,
and a refresh waiting for an upstream another run is refreshing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.services.runs import RunService
from app.store import actions, graph_changes, graphs, run_reads, runs
from app.store.database import Database
from jobs import JobContext, JobFailed, job_type
from tests.helpers import wait_until

# Gates a GATE job waits on (by parameters.gate); FLAKY_RUN jobs fail while "fail" is set.
GATES: dict[str, threading.Event] = {}
FAILING: set[str] = set()


@job_type("GATE")
def gate(ctx: JobContext) -> None:
    """Waits until the test opens its gate (or the job is cancelled)."""
    event = GATES[str(ctx.parameters["gate"])]
    while not event.is_set():
        if ctx.wait(0.02):
            return


@job_type("FLAKY_RUN")
def flaky_run(ctx: JobContext) -> None:
    """Fails while its name is in FAILING."""
    if ctx.parameters["name"] in FAILING:
        raise JobFailed("failing on purpose")


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    for event in GATES.values():
        event.set()
    GATES.clear()
    FAILING.clear()


def model(
    db: Database, jobs_by_name: dict[str, dict[str, Any]], edges: list[tuple[str, str]]
) -> int:
    """A model of these assets ({name: job}) and (upstream, downstream) dependencies."""
    model_id = graphs.create_model(db, f"m{len(GATES)}-{id(jobs_by_name)}", None)
    assets = [{"name": name, "job": job} for name, job in jobs_by_name.items()]
    graph_changes.replace_graph(db, model_id, assets, edges)
    return model_id


def noop(name: str) -> dict[str, Any]:
    return {"targetObject": f"{name}.NOOP"}


def gated(name: str) -> dict[str, Any]:
    GATES[name] = threading.Event()
    return {"targetObject": f"{name}.GATE", "parameters": {"gate": name}}


def start(runtime: Runtime, model_id: int, **request: Any) -> int:
    return RunService.for_runtime(runtime).start(model_id, runs.RunRequest(**request), "admin")


def run_of(db: Database, model_id: int, run_id: int) -> dict[str, Any]:
    found = run_reads.get_run(db, model_id, run_id)
    assert found is not None
    return found


def assets_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["asset"]: a for a in run["assets"]}


def wait_state(db: Database, model_id: int, run_id: int, state: str) -> dict[str, Any]:
    return wait_until(
        lambda: (r := run_of(db, model_id, run_id))["state"] == state and r,
        timeout=20,
        what=f"run {run_id} to be {state}",
    )


def test_a_diamond_starts_d_once_after_the_slower_of_b_and_c(
    runtime: Runtime, pool: WorkerPool
) -> None:
    db = runtime.db
    jobs_ = {"a": noop("a"), "b": gated("b"), "c": gated("c"), "d": noop("d")}
    model_id = model(db, jobs_, [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    run_id = start(runtime, model_id)
    run = run_of(db, model_id, run_id)
    assert [a["asset"] for a in run["assets"]] == ["a", "b", "c", "d"]
    assert run["batch"] == f"run-{run_id}" and run["state"] == "RUNNING"
    wait_until(lambda: assets_of(run_of(db, model_id, run_id))["c"]["status"] == "PROCESSING")
    GATES["c"].set()
    wait_until(lambda: assets_of(run_of(db, model_id, run_id))["c"]["status"] == "FINISHED")
    d = assets_of(run_of(db, model_id, run_id))["d"]
    assert d["status"] == "WAITING_FOR_PARENT"
    assert d["waiting_for"] == f"waiting for 'b' in batch run-{run_id}"
    GATES["b"].set()
    done = assets_of(wait_state(db, model_id, run_id, "SUCCEEDED"))
    assert done["d"]["started_at"] >= done["b"]["finished_at"]
    assert done["d"]["started_at"] >= done["c"]["finished_at"]
    # d ran exactly once: one job, one attempt, one claim.
    job = actions_job(db, done["d"]["job_id"])
    assert job["attempt"] == 1
    assert run_reads.job_asset(db, done["d"]["job_id"]) == {
        "model_id": model_id,
        "model": graphs.get_model(db, model_id)["name"],  # type: ignore[index]
        "asset_id": _asset_id(db, model_id, "d"),
        "asset": "d",
        "run_id": run_id,
        "batch": f"run-{run_id}",
        "reason": None,  # run by hand, not by automation
    }
    shown = graphs.get_asset(db, model_id, _asset_id(db, model_id, "d"))
    assert shown is not None and shown["last_refresh"]["job_id"] == done["d"]["job_id"]


def actions_job(db: Database, job_id: int) -> dict[str, Any]:
    from app.store import queries

    job = queries.get_job(db, job_id)
    assert job is not None
    return job


def _asset_id(db: Database, model_id: int, name: str) -> int:
    found = graphs.list_assets(db, model_id)
    assert found is not None
    return next(a["id"] for a in found if a["name"] == name)


def test_a_failed_upstream_skips_downstream_and_a_retry_finishes_the_run(
    runtime: Runtime, pool: WorkerPool
) -> None:
    db = runtime.db
    FAILING.add("b")
    flaky = {"targetObject": "b.FLAKY_RUN", "parameters": {"name": "b"}}
    jobs_ = {"a": noop("a"), "b": flaky, "c": noop("c"), "d": noop("d"), "e": noop("e")}
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]
    model_id = model(db, jobs_, edges)
    run_id = start(runtime, model_id)
    failed = assets_of(wait_state(db, model_id, run_id, "FAILED"))
    batch = f"run-{run_id}"
    assert failed["b"]["status"] == "FAILED"
    assert failed["c"]["status"] == "FINISHED"
    assert failed["d"]["status"] == "SKIPPED"
    assert failed["d"]["message"] == f"skipped: upstream asset 'b' failed in batch {batch}"
    assert failed["e"]["message"] == f"skipped: upstream asset 'd' skipped in batch {batch}"
    FAILING.clear()
    actions.retry(db, failed["b"]["job_id"])
    done = assets_of(wait_state(db, model_id, run_id, "SUCCEEDED"))
    assert {a["status"] for a in done.values()} == {"FINISHED"}
    assert done["d"]["job_id"] == failed["d"]["job_id"]  # the same run, continued


def test_two_runs_of_one_batch_start_the_report_once_after_the_second(
    runtime: Runtime, pool: WorkerPool
) -> None:
    db = runtime.db
    jobs_ = {"load_sales": noop("s"), "load_expenses": noop("e"), "profit_report": noop("p")}
    edges = [("load_sales", "profit_report"), ("load_expenses", "profit_report")]
    model_id = model(db, jobs_, edges)
    first = start(runtime, model_id, assets=["load_sales"], batch="2024-03")
    run = wait_until(
        lambda: (r := run_of(db, model_id, first))["assets"][0]["status"] == "FINISHED" and r
    )
    assert [a["asset"] for a in run["assets"]] == ["load_sales", "profit_report"]
    report = assets_of(run)["profit_report"]
    assert report["status"] == "WAITING_FOR_PARENT"
    assert report["waiting_for"] == "waiting for 'load_expenses' in batch 2024-03"
    # Another batch never mixes with this one.
    other = start(runtime, model_id, assets=["load_expenses"], batch="2024-04")
    other_report = assets_of(run_of(db, model_id, other))["profit_report"]
    assert other_report["job_id"] != report["job_id"]
    expenses = lambda: assets_of(run_of(db, model_id, other))["load_expenses"]  # noqa: E731
    wait_until(lambda: expenses()["status"] == "FINISHED")
    assert actions_job(db, report["job_id"])["status"] == "WAITING_FOR_PARENT"
    # The second run of 2024-03 completes it: the report starts once, in the first run.
    second = start(runtime, model_id, assets=["load_expenses"], batch="2024-03")
    assert assets_of(run_of(db, model_id, second))["profit_report"]["job_id"] == report["job_id"]
    wait_state(db, model_id, second, "SUCCEEDED")
    wait_state(db, model_id, first, "SUCCEEDED")
    assert actions_job(db, report["job_id"])["attempt"] == 1
    log = run_reads.batch_log(db, model_id, "2024-03")
    assert log is not None
    assert [(t["asset"], t["task_status"]) for t in log] == [
        ("load_expenses", "SUCCESS"),
        ("load_sales", "SUCCESS"),
        ("profit_report", "SUCCESS"),
    ]
    assert {t["job_id"] for t in log} >= {report["job_id"]}
    # 2024-04 still waits for its sales.
    assert run_of(db, model_id, other)["state"] == "RUNNING"
    # Refreshing sales again in 2024-03 is refused unless forced; forced, no second report.
    with pytest.raises(runs.AlreadyInBatch) as refused:
        start(runtime, model_id, assets=["load_sales"], batch="2024-03")
    assert refused.value.names == ["load_sales"]
    forced = start(runtime, model_id, assets=["load_sales"], batch="2024-03", force=True)
    assert [a["asset"] for a in run_of(db, model_id, forced)["assets"]] == ["load_sales"]
    wait_state(db, model_id, forced, "SUCCEEDED")
    assert actions_job(db, report["job_id"])["attempt"] == 1


def test_a_refresh_waits_for_an_upstream_another_run_is_refreshing(
    runtime: Runtime, pool: WorkerPool
) -> None:
    db = runtime.db
    model_id = model(db, {"A": gated("A"), "B": noop("B")}, [("A", "B")])
    first = start(runtime, model_id, assets=["A"], downstream=False)
    wait_until(lambda: assets_of(run_of(db, model_id, first))["A"]["status"] == "PROCESSING")
    second = start(runtime, model_id, assets=["B"])
    b = assets_of(run_of(db, model_id, second))["B"]
    assert b["status"] == "WAITING_FOR_PARENT"
    assert b["waiting_for"] == f"waiting for 'A' in batch run-{first}"
    # The root of the second run has long finished; B still waits for A's refresh.
    root_id = run_of(db, model_id, second)["root_job_id"]
    wait_until(lambda: actions_job(db, root_id)["status"] == "FINISHED")
    assert actions_job(db, b["job_id"])["status"] == "WAITING_FOR_PARENT"
    GATES["A"].set()
    done = assets_of(wait_state(db, model_id, second, "SUCCEEDED"))
    a = assets_of(run_of(db, model_id, first))["A"]
    assert done["B"]["started_at"] >= a["finished_at"]
    # Once A is not refreshing, a refresh of B does not wait.
    third = start(runtime, model_id, assets=["B"])
    assert assets_of(wait_state(db, model_id, third, "SUCCEEDED"))["B"]["waiting_for"] is None


def test_cancelling_a_run_cancels_its_waiting_and_running_jobs(
    runtime: Runtime, pool: WorkerPool
) -> None:
    db = runtime.db
    model_id = model(db, {"a": gated("a"), "b": noop("b")}, [("a", "b")])
    run_id = start(runtime, model_id)
    wait_until(lambda: assets_of(run_of(db, model_id, run_id))["a"]["status"] == "PROCESSING")
    with pytest.raises(graphs.Refreshing):
        graphs.delete_model(db, model_id)
    runs.cancel_run(db, model_id, run_id)
    cancelled = assets_of(wait_state(db, model_id, run_id, "CANCELLED"))
    assert {a["status"] for a in cancelled.values()} == {"CANCELLED"}
    assert graphs.delete_model(db, model_id)
