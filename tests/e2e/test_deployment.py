"""The multi-machine shape, for real: API nodes under gunicorn and ``jobchain worker``
processes sharing one PostgreSQL database and nothing else.

It is the deployment docs/operations/deployment.md describes, on one machine: two stateless
API nodes (``gunicorn wsgi:app``), two worker processes. A chain with a join submitted through
one node is read through the other and finishes; after one API node is killed and one worker
stopped with SIGTERM, the survivors run the next chain.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli.client import ApiClient
from tests.conftest import throwaway_postgres
from tests.helpers import ADMIN_TOKEN, flatten, wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN_URL = re.compile(r"Listening at: (http://\S+)")
READY = "jobchain worker ready"
TERMINAL = {"FINISHED", "FAILED", "CANCELLED", "SKIPPED"}

CHAIN_WITH_JOIN = {
    "targetObject": "load.NOOP",
    "nextJobs": [
        {"targetObject": f"A{i}.NOOP", "nextJobs": [{"targetObject": "profit.JOIN"}]}
        for i in range(1, 4)
    ]
    + [{"targetObject": "last.NOOP", "nextJobs": [{"targetObject": "profit.JOIN",
        "nextJobs": [{"targetObject": "B.NOOP", "nextJobs": [{"targetObject": "C.NOOP"}]}]}]}],
}  # fmt: skip


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty database of its own: the processes create the schema themselves."""
    yield from throwaway_postgres("jobchain_deploy")


class Process:
    """A subprocess whose output goes to a file, found ready by a line it prints."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.log.name} exited early:\n{self.output()}")
            return pattern.search(self.output())

        return wait_until(seen, timeout=60, interval=0.05, what=f"{self.log.name} to start")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


@pytest.fixture
def cluster(fresh_postgres: str, tmp_path: Path) -> Iterator[tuple[list[Process], list[Process]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(
        JOBCHAIN_DATABASE_URL=fresh_postgres,
        JOBCHAIN_API_TOKENS=f"admin:{ADMIN_TOKEN}",
        JOBCHAIN_LEASE_SECONDS="3",
        JOBCHAIN_REAP_INTERVAL_SECONDS="0.5",
        # Only notifications between processes can make a chain fast; see the timing below.
        JOBCHAIN_IDLE_POLL_SECONDS="1",
    )
    api = [
        Process(
            [str(BIN / "gunicorn"), "-w", "1", "-b", "127.0.0.1:0", "wsgi:app"],
            env,
            tmp_path / f"api{i}.log",
        )
        for i in range(2)
    ]
    workers = [
        Process([str(BIN / "jobchain"), "worker", "--workers", "2"], env, tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    try:
        yield api, workers
    finally:
        for process in api + workers:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(10)


def run_chain(submit_via: ApiClient, read_via: ApiClient) -> list[dict[str, Any]]:
    root = submit_via.submit(CHAIN_WITH_JOIN)
    nodes = wait_until(
        lambda: (
            (ns := flatten(read_via.tree(root["id"])))
            and all(n["status"] in TERMINAL for n in ns)
            and ns
        ),
        timeout=30,
        interval=0.05,
        what="the chain to end",
    )
    return list(nodes)


def test_api_nodes_and_workers_share_only_the_database(
    cluster: tuple[list[Process], list[Process]],
) -> None:
    api, workers = cluster
    urls = [node.wait_for(GUNICORN_URL).group(1) for node in api]
    for worker in workers:
        worker.wait_for(re.compile(READY))
    first, second = (ApiClient(url, timeout=10, token=ADMIN_TOKEN) for url in urls)

    nodes = run_chain(first, second)
    assert {n["status"] for n in nodes} == {"FINISHED"}, nodes
    assert [n["targetObject"] for n in nodes].count("B.NOOP") == 1

    # Lose an API node abruptly and a worker gracefully: the survivors carry on.
    api[0].stop(signal.SIGKILL)
    assert workers[0].stop(signal.SIGTERM) == 0
    nodes = run_chain(second, second)
    assert {n["status"] for n in nodes} == {"FINISHED"}, nodes
    assert "stopped" in workers[0].output()
    second.close()
    first.close()
