"""Concurrent graph changes never create a cycle, on SQLite and PostgreSQL: 20 threads add
random dependencies at once (through the store, and through the HTTP API), and what is
stored is then checked with the domain's own rule."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
import requests

from app.domain.graphs import topological_order
from app.store import graph_changes, graphs
from app.store.database import Database
from tests.helpers import AUTH, LiveServer

THREADS = 20
ATTEMPTS = 12
ASSETS = 8


def model_with_assets(db: Database) -> tuple[int, list[int]]:
    model_id = graphs.create_model(db, "race", None)
    job = {"targetObject": "NOOP"}
    names = [f"a{i}" for i in range(ASSETS)]
    ids = [graph_changes.create_asset(db, model_id, {"name": n, "job": job}) for n in names]
    return model_id, ids


def race(ids: list[int], add: Callable[[int, int], str]) -> dict[str, int]:
    """THREADS threads, released together, each adding ATTEMPTS random dependencies; the
    outcomes counted ("added", "cycle", "duplicate")."""
    barrier = threading.Barrier(THREADS)
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait(timeout=30)
            for _ in range(ATTEMPTS):
                outcome = add(rng.choice(ids), rng.choice(ids))
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert sum(outcomes.values()) == THREADS * ATTEMPTS
    return outcomes


def assert_acyclic(db: Database, model_id: int) -> None:
    found = graphs.names_and_edges(db, model_id)
    assert found is not None
    names, edges = found
    assert len(set(edges)) == len(edges)
    order = topological_order(names, edges)  # raises CycleFound on a cycle
    position = {name: i for i, name in enumerate(order)}
    assert all(position[up] < position[down] for up, down in edges)


def test_concurrent_store_changes_leave_an_acyclic_graph(db: Database) -> None:
    model_id, ids = model_with_assets(db)

    def add(upstream: int, downstream: int) -> str:
        try:
            graph_changes.add_dependency(db, model_id, upstream, downstream)
        except graph_changes.DependencyCycle:
            return "cycle"
        except graph_changes.DuplicateDependency:
            return "duplicate"
        return "added"

    outcomes = race(ids, add)
    assert outcomes.get("added") and outcomes.get("cycle"), outcomes
    assert_acyclic(db, model_id)


@pytest.mark.timeout(300)
def test_concurrent_api_calls_leave_an_acyclic_graph(db: Database, live: LiveServer) -> None:
    model_id, ids = model_with_assets(db)
    local = threading.local()

    def add(upstream: int, downstream: int) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(AUTH)
        response = local.session.post(
            f"{live.url}/api/v1/models/{model_id}/dependencies",
            json={"upstreamId": upstream, "downstreamId": downstream},
            timeout=60,
        )
        codes = {201: "added", 400: "cycle", 409: "duplicate"}
        assert response.status_code in codes, response.text
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "dependency_cycle"
        return codes[response.status_code]

    outcomes = race(ids, add)
    assert outcomes.get("added") and outcomes.get("cycle"), outcomes
    assert_acyclic(db, model_id)
