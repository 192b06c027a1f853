"""A run survives ``kill -9`` of the serving process: the restarted server re-runs the
interrupted asset jobs (their leases expire) and the run finishes, its last asset started
exactly once after both of its upstreams. SQLite and PostgreSQL (``start_server`` takes
the parametrized ``db``)."""

from __future__ import annotations

from typing import Any

from tests.e2e import test_crash
from tests.e2e.test_crash import Start
from tests.helpers import wait_until

start_server = test_crash.start_server  # the fixture: real servers on the test database


def sleep(seconds: float) -> dict[str, Any]:
    return {"targetObject": "SLEEP", "parameters": {"seconds": seconds}, "maxAttempts": 2}


GRAPH = {
    "assets": [
        {"name": "a", "job": {"targetObject": "a.NOOP"}},
        {"name": "b", "job": sleep(2.0)},
        {"name": "c", "job": sleep(1.5)},
        {"name": "d", "job": {"targetObject": "d.NOOP"}},
    ],
    "dependencies": [
        {"upstream": "a", "downstream": "b"},
        {"upstream": "a", "downstream": "c"},
        {"upstream": "b", "downstream": "d"},
        {"upstream": "c", "downstream": "d"},
    ],
}


def test_kill_during_a_run_then_restart_finishes_it(start_server: Start) -> None:
    first = start_server("first")
    model_id = int(first.client.create_model({"name": "diamond"})["id"])
    first.client.put_graph(model_id, GRAPH)
    run_id = int(first.client.start_run(model_id, {})["id"])

    def running() -> bool:
        assets = {a["name"]: a for a in first.client.run(model_id, run_id)["assets"]}
        assert assets["d"]["status"] == "WAITING_FOR_PARENT", assets
        return all(assets[n]["status"] == "PROCESSING" for n in "bc")

    wait_until(running, timeout=20, interval=0.05, what="b and c to run")
    first.kill()

    second = start_server("second")
    run = wait_until(
        lambda: (r := second.client.run(model_id, run_id))["state"] != "RUNNING" and r,
        timeout=30,
        interval=0.1,
        what=f"run {run_id} to end",
    )
    assert run["state"] == "SUCCEEDED", run
    assets = {a["name"]: a for a in run["assets"]}
    assert assets["b"]["jobId"] and second.client.job(assets["b"]["jobId"])["attempt"] == 2
    d = second.client.job(assets["d"]["jobId"])
    assert d["attempt"] == 1
    assert assets["d"]["startedAt"] >= max(assets["b"]["finishedAt"], assets["c"]["finishedAt"])
    events = second.client.events(d["id"])
    assert [e["toStatus"] for e in events].count("WAITING_FOR_DISPATCH") == 1, events
    assert [e["toStatus"] for e in events].count("FINISHED") == 1, events
