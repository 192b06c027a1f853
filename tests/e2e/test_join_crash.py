"""Exact joins survive ``kill -9``: a real ``jobchain serve`` is killed between arrivals.

"Crash safe: kill -9 between arrivals, restart: the join completes and fires once." The
fan-in is root -> A1 (NOOP), A2 and A3 (SLEEP) -> ``profit.JOIN`` each -> B under one JOIN
node. The server is killed once some JOIN nodes have arrived and the SLEEPs are running;
the restarted server re-runs the SLEEPs (their leases expire), the missing arrivals come in
and the join fires exactly once. Runs on SQLite and PostgreSQL (``start_server`` takes the
parametrized ``db``).
"""

from __future__ import annotations

from typing import Any

from app.cli.client import ApiClient
from tests.e2e import test_crash
from tests.e2e.test_crash import ServeProcess, Start, reasons, wait_for_chain_end
from tests.helpers import flatten, wait_until
from tests.store.test_joins import fan_in

start_server = test_crash.start_server  # the fixture: real servers on the test database

Jobs = dict[str, dict[str, Any]]
TERMINAL = {"FINISHED", "FAILED", "CANCELLED", "SKIPPED"}


def submit(client: ApiClient, sleeps: dict[str, tuple[float, int]]) -> int:
    """The fan-in over HTTP; ``sleeps`` maps a SLEEP branch to (seconds, maxAttempts)."""
    payload = fan_in(["A1", "A2:SLEEP", "A3:SLEEP"])
    for branch in payload["nextJobs"]:
        name = branch["targetObject"].split(".")[0]
        if name in sleeps:
            seconds, attempts = sleeps[name]
            branch.update(parameters={"seconds": seconds}, maxAttempts=attempts)
    root: dict[str, Any] = client.submit(payload)
    return int(root["id"])


def the_join(client: ApiClient, root_id: int) -> dict[str, Any]:
    """``GET /api/v1/joins?key=profit``: the one join of this tree (ApiClient has no call)."""
    response = client.session.get(
        f"{client.base_url}/api/v1/joins", params={"key": "profit"}, timeout=client.timeout
    )
    with response:
        assert response.status_code == 200, response.text
        found = [j for j in response.json()["items"] if j["rootId"] == root_id]
    assert len(found) == 1, found
    return found[0]


def chain(client: ApiClient, root_id: int) -> tuple[Jobs, list[dict[str, Any]]]:
    """The tree's jobs by target (JOIN nodes excluded: they share one) and the JOIN nodes."""
    nodes = flatten(client.tree(root_id))
    named = {n["targetObject"]: n for n in nodes if n["jobType"] != "JOIN"}
    return named, [n for n in nodes if n["jobType"] == "JOIN"]


def kill_after_arrivals(
    server: ServeProcess, root_id: int, arrivals: int, running: dict[str, int]
) -> None:
    """Wait until exactly ``arrivals`` JOIN nodes arrived while the ``running`` SLEEPs are
    PROCESSING (at the given attempt), then ``kill -9`` the server."""

    def ready() -> bool:
        join = the_join(server.client, root_id)
        jobs, _ = chain(server.client, root_id)
        arrived = len(join["arrivals"])
        overshot = arrived > arrivals or any(jobs[name]["status"] in TERMINAL for name in running)
        assert not overshot, f"missed the kill window (too slow?): {join}, {jobs}"
        return arrived == arrivals and all(
            jobs[name]["status"] == "PROCESSING" and jobs[name]["attempt"] == attempt
            for name, attempt in running.items()
        )

    wait_until(
        ready,
        timeout=20,
        interval=0.05,
        what=f"{arrivals} arrival(s) at 'profit' while {sorted(running)} run",
    )
    server.kill()


def assert_fired_once(client: ApiClient, root_id: int, attempts: dict[str, int]) -> None:
    """Every job finished; the join FIRED with one arrival per node; B released once."""
    jobs, join_nodes = chain(client, root_id)
    assert {name: job["status"] for name, job in jobs.items()} == {
        "A.NOOP": "FINISHED",
        "A1.NOOP": "FINISHED",
        "A2.SLEEP": "FINISHED",
        "A3.SLEEP": "FINISHED",
        "B.NOOP": "FINISHED",
    }
    for name, attempt in attempts.items():
        assert jobs[name]["attempt"] == attempt, jobs[name]
        assert reasons(client, jobs[name]["id"]).count("lease expired, re-run") == attempt - 1
    assert jobs["A1.NOOP"]["attempt"] == 1

    join = the_join(client, root_id)
    node_ids = sorted(n["id"] for n in join_nodes)
    b_id = jobs["B.NOOP"]["id"]
    assert join["state"] == "FIRED"
    assert join["expected"] == 3
    assert sorted(join["nodeJobIds"]) == node_ids
    assert len(join["arrivals"]) == 3
    assert sorted(a["jobId"] for a in join["arrivals"]) == node_ids  # one per JOIN node
    assert {a["parentOutcome"] for a in join["arrivals"]} == {"FINISHED"}
    assert join["decidedByJobId"] in node_ids
    assert join["nextJobIds"] == [b_id]
    assert join["startedJobIds"] == [b_id]

    assert all(n["status"] == "FINISHED" and n["attempt"] == 1 for n in join_nodes), join_nodes
    messages = sorted(n["message"] for n in join_nodes)
    # The deciding arrival says so; the two that waited were ended by the decision.
    assert messages[0].startswith("arrival 3 of 3 at join 'profit'"), messages
    assert messages[0].endswith("; join FIRED"), messages
    assert messages[1:] == ["join 'profit' FIRED"] * 2, messages

    b_events = client.events(b_id)
    released = [e for e in b_events if e["toStatus"] == "WAITING_FOR_DISPATCH"]
    assert len(released) == 1, b_events
    assert [e["toStatus"] for e in b_events].count("FINISHED") == 1, b_events
    assert client.jobs(status="PROCESSING")["items"] == []


def test_kill_between_arrivals_join_fires_once_after_restart(start_server: Start) -> None:
    first = start_server("first")
    root_id = submit(first.client, {"A2": (2.0, 2), "A3": (3.0, 2)})
    # A1's JOIN node arrived; A2 and A3 are mid-run, their JOIN nodes still waiting.
    kill_after_arrivals(first, root_id, arrivals=1, running={"A2.SLEEP": 1, "A3.SLEEP": 1})

    second = start_server("second")
    wait_for_chain_end(second.client, root_id)
    assert_fired_once(second.client, root_id, {"A2.SLEEP": 2, "A3.SLEEP": 2})
    assert "recovered" in second.stderr


def test_killed_twice_between_arrivals_join_still_fires_once(start_server: Start) -> None:
    first = start_server("first")
    # A3 is killed twice, so it needs a third attempt; A2 ends between the two kills.
    root_id = submit(first.client, {"A2": (2.0, 2), "A3": (4.0, 3)})
    kill_after_arrivals(first, root_id, arrivals=1, running={"A2.SLEEP": 1, "A3.SLEEP": 1})

    second = start_server("second")
    kill_after_arrivals(second, root_id, arrivals=2, running={"A3.SLEEP": 2})

    third = start_server("third")
    wait_for_chain_end(third.client, root_id)
    assert_fired_once(third.client, root_id, {"A2.SLEEP": 2, "A3.SLEEP": 3})
