"""Crash recovery for real: ``kill -9`` a ``jobchain serve`` process mid-job, start it again.

The server runs as a subprocess exactly as an operator would start it (the console
script, from the repository root, configured only through ``JOBCHAIN_*`` variables), so
these tests also cover startup on port 0, loading ``examples.pricing_jobs`` from the
working directory and a graceful SIGTERM. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli.client import ApiClient
from app.store.database import Database
from config import Settings
from tests.helpers import ADMIN_TOKEN, flatten, wait_until

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"jobchain API listening on (http://\S+)")

FAST_ENV = {
    "JOBCHAIN_HOST": "127.0.0.1",
    "JOBCHAIN_PORT": "0",
    "JOBCHAIN_WORKERS": "4",
    "JOBCHAIN_LEASE_SECONDS": "1.5",
    "JOBCHAIN_REAP_INTERVAL_SECONDS": "0.3",
    "JOBCHAIN_RETRY_BASE_SECONDS": "0.05",
    "JOBCHAIN_JOB_MODULES": "examples.pricing_jobs",
    "JOBCHAIN_API_TOKENS": f"admin:{ADMIN_TOKEN}",
}


def serve_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m app.cli``."""
    script = Path(sys.executable).with_name("jobchain")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "app.cli", "serve"]


class ServeProcess:
    """One ``jobchain serve`` subprocess; stdout and stderr go to files for diagnosis. Its
    ``client`` sends ``token`` (the one JOBCHAIN_API_TOKENS seeds in these tests)."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        name: str,
        cwd: Path = REPO,
        token: str | None = ADMIN_TOKEN,
    ):
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(serve_command(), cwd=cwd, env=env, stdout=out, stderr=err)
        url = wait_until(self._url, timeout=30, what=f"{name} to print its URL")
        assert url is not None
        self.url = url
        self.client = ApiClient(self.url, timeout=10, token=token)

    def _url(self) -> str | None:
        match = URL_LINE.search(self.stdout_path.read_text())
        if match:
            return match.group(1)
        if self.proc.poll() is not None:
            raise AssertionError(f"jobchain serve exited {self.proc.returncode}:\n{self.stderr}")
        return None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay held until they expire."""
        self.proc.kill()
        self.proc.wait(10)


Start = Callable[[str], ServeProcess]


@pytest.fixture
def start_server(db: Database, settings: Settings, tmp_path: Path) -> Iterator[Start]:
    """Start servers on the test database; every one still alive is killed at teardown."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(FAST_ENV, JOBCHAIN_DATABASE_URL=settings.database_url)
    started: list[ServeProcess] = []

    def start(name: str) -> ServeProcess:
        server = ServeProcess(env, tmp_path, name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.client.close()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def by_target(client: ApiClient, root_id: int) -> dict[str, dict[str, Any]]:
    return {node["targetObject"]: node for node in flatten(client.tree(root_id))}


def wait_for_status(client: ApiClient, job_id: int, status: str, timeout: float = 20) -> None:
    wait_until(
        lambda: client.job(job_id)["status"] == status,
        timeout,
        interval=0.05,
        what=f"job {job_id} to be {status}",
    )


def wait_for_chain_end(client: ApiClient, root_id: int, timeout: float = 30) -> None:
    terminal = {"FINISHED", "FAILED", "CANCELLED", "SKIPPED"}
    wait_until(
        lambda: all(n["status"] in terminal for n in flatten(client.tree(root_id))),
        timeout,
        interval=0.05,
        what=f"chain {root_id} to end",
    )


def reasons(client: ApiClient, job_id: int) -> list[str]:
    return [event["reason"] for event in client.events(job_id)]


def test_killed_job_reruns_after_restart_and_chain_finishes(start_server: Start) -> None:
    first = start_server("first")
    root = first.client.submit(
        {
            "targetObject": "load.NOOP",
            "nextJobs": [
                {
                    "targetObject": "work.SLEEP",
                    "parameters": {"seconds": 2},
                    "maxAttempts": 2,
                    "nextJobs": [{"targetObject": "after.NOOP"}, {"targetObject": "38.CFS"}],
                },
                {"targetObject": "fanout.NOOP"},
            ],
        }
    )

    def sleep_running_alone() -> int | None:
        # The fan-out sibling must be done: killed while PROCESSING it would (rightly) fail
        # "interrupted", having only one attempt.
        jobs = by_target(first.client, root["id"])
        busy = jobs["work.SLEEP"]["status"] == "PROCESSING"
        done = jobs["fanout.NOOP"]["status"] == "FINISHED"
        return jobs["work.SLEEP"]["id"] if busy and done else None

    sleep_id = wait_until(sleep_running_alone, what="SLEEP running, fan-out finished")
    assert sleep_id is not None
    first.kill()

    second = start_server("second")
    wait_for_chain_end(second.client, root["id"])

    jobs = by_target(second.client, root["id"])
    assert {target: job["status"] for target, job in jobs.items()} == {
        "load.NOOP": "FINISHED",
        "work.SLEEP": "FINISHED",
        "after.NOOP": "FINISHED",
        "38.CFS": "FINISHED",
        "fanout.NOOP": "FINISHED",
    }
    assert all(job["startedAt"] and job["finishedAt"] for job in jobs.values())
    assert jobs["work.SLEEP"]["attempt"] == 2
    assert jobs["work.SLEEP"]["result"] == {"slept": 2.0}
    assert "lease expired, re-run" in reasons(second.client, sleep_id)
    assert jobs["38.CFS"]["result"] == {"fieldSet": "38", "fields": 3}
    assert second.client.jobs(status="PROCESSING")["items"] == []
    assert "recovered 1 job(s) with expired leases" in second.stderr


def test_killed_job_without_attempts_left_fails_interrupted(start_server: Start) -> None:
    first = start_server("first")
    root = first.client.submit(
        {
            "targetObject": "155.LPG",
            "parameters": {"mode": "full", "stepSeconds": 10},
            "nextJobs": [
                {"targetObject": "alert.NOOP", "executeOnError": True},
                {"targetObject": "38.CFS", "nextJobs": [{"targetObject": "publish.NOOP"}]},
            ],
        }
    )
    wait_for_status(first.client, root["id"], "PROCESSING")
    first.kill()

    second = start_server("second")
    wait_for_chain_end(second.client, root["id"])

    jobs = by_target(second.client, root["id"])
    assert {target: job["status"] for target, job in jobs.items()} == {
        "155.LPG": "FAILED",
        "alert.NOOP": "FINISHED",
        "38.CFS": "SKIPPED",
        "publish.NOOP": "SKIPPED",
    }
    assert jobs["155.LPG"]["message"] == "interrupted"
    assert jobs["155.LPG"]["attempt"] == 1
    assert "lease expired, interrupted" in reasons(second.client, root["id"])
    assert second.client.jobs(status="PROCESSING")["items"] == []


def test_sigterm_stops_promptly_with_exit_code_0(start_server: Start) -> None:
    server = start_server("graceful")
    root = server.client.submit({"targetObject": "155.LPG", "parameters": {"stepSeconds": 0}})
    wait_for_chain_end(server.client, root["id"])
    assert server.client.job(root["id"])["status"] == "FINISHED"

    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert time.monotonic() - began < 5
    assert "stopped" in server.stderr
    assert "Traceback" not in server.stderr
