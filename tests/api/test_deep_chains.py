"""A chain of 1,000 links, end to end with the default settings: accepted over HTTP, run
by a worker pool to the end, read back over the API, shown by the console and printed by
the CLI. Python's json module and any per-level recursion give up near 500 links."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from app.cli import cli
from app.domain import jsontext
from app.runner.worker_pool import WorkerPool
from app.store import queries, retention
from app.store.database import Database
from tests.admin.test_admin import log_in
from tests.helpers import ADMIN_TOKEN, AUTH, LiveServer, flatten, wait_for_chain

LINKS = 1_000


def chain_body(links: int) -> dict[str, Any]:
    """``1.NOOP`` -> ``2.NOOP`` -> ... -> ``<links>.NOOP``, built from the leaf up."""
    node: dict[str, Any] = {"targetObject": f"{links}.NOOP"}
    for level in range(links - 1, 0, -1):
        node = {"targetObject": f"{level}.NOOP", "nextJobs": [node]}
    return node


def levels(tree: dict[str, Any], children: str = "nextJobs") -> Iterator[dict[str, Any]]:
    """The nodes of a chain from the root down, checking it stays one chain."""
    node: dict[str, Any] | None = tree
    while node is not None:
        yield node
        below = node.get(children, [])
        assert len(below) <= 1
        node = below[0] if below else None


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers.update(AUTH)
        yield http


def test_a_1000_link_chain_runs_end_to_end(
    live: LiveServer, pool: WorkerPool, db: Database, session: requests.Session
) -> None:
    raw = jsontext.dumps({"data": chain_body(LINKS)})
    with pytest.raises(RecursionError):
        json.loads(raw)  # what the API decoded with before
    answer = session.post(
        f"{live.url}/api/v1/jobs",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text[:500]
    root_id = answer.json()["id"]

    stored = wait_for_chain(db, root_id, timeout=180)
    assert [n["status"] for n in flatten(stored)] == ["FINISHED"] * LINKS

    # The tree over the API, nested 1,000 deep.
    tree_answer = session.get(f"{live.url}/api/v1/jobs/{root_id}/tree", timeout=60)
    assert tree_answer.status_code == 200
    tree = jsontext.loads(tree_answer.content)
    chain = list(levels(tree))
    assert [n["targetObject"] for n in chain] == [f"{i}.NOOP" for i in range(1, LINKS + 1)]
    assert {n["status"] for n in chain} == {"FINISHED"}
    assert [n["parentId"] for n in chain[1:]] == [n["id"] for n in chain[:-1]]

    # The console's chain page: every job, in chain order.
    console = live.app.test_client()
    log_in(console)
    page = console.get(f"/admin/chains/{root_id}")
    assert page.status_code == 200
    ids = [n["id"] for n in chain]
    at = [page.text.index(f'id="job-{job_id}"') for job_id in ids]
    assert at == sorted(at)
    assert f"{LINKS} jobs" in page.text

    # The CLI: one line per job, the depth written out past the drawn indent.
    options = ["--url", live.url, "--token", ADMIN_TOKEN]
    printed = CliRunner().invoke(cli, [*options, "status", str(root_id)])
    assert printed.exit_code == 0, printed.output[-2000:]
    lines = printed.output.splitlines()
    assert len(lines) == LINKS
    assert lines[0].split() == [str(ids[0]), "FINISHED", "1.NOOP"]
    assert lines[-1].split() == [f"[{LINKS - 1}]", str(ids[-1]), "FINISHED", f"{LINKS}.NOOP"]
    assert max(len(line) for line in lines) < 200
    as_json = CliRunner().invoke(cli, [*options, "status", str(root_id), "--json"])
    assert as_json.exit_code == 0
    # (compared as text: == on nested dicts recurses too)
    assert jsontext.dumps(jsontext.loads(as_json.output)) == jsontext.dumps(tree)


def test_the_cli_submits_and_waits_for_a_1000_link_chain(
    live: LiveServer, pool: WorkerPool, tmp_path: Any
) -> None:
    payload = tmp_path / "chain.json"
    payload.write_text(jsontext.dumps(chain_body(LINKS)))
    options = ["--url", live.url, "--token", ADMIN_TOKEN]
    result = CliRunner().invoke(
        cli, [*options, "submit", str(payload), "--wait", "--timeout", "180"]
    )
    assert result.exit_code == 0, result.output[-2000:]
    lines = result.output.splitlines()
    assert lines[0].startswith("submitted job") and len(lines) == 1 + LINKS
    assert all(" FINISHED " in line for line in lines[1:])


def test_over_deep_and_bracket_bodies_are_refused(
    live: LiveServer, db: Database, session: requests.Session
) -> None:
    url = f"{live.url}/api/v1/jobs"
    headers = {"Content-Type": "application/json"}
    too_deep = session.post(url, data=jsontext.dumps(chain_body(10_001)), headers=headers)
    assert too_deep.status_code == 400
    error = too_deep.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["details"] == {
        ".".join(["nextJobs[0]"] * 10_000): ["nested deeper than 10000 levels"]
    }
    brackets = session.post(url, data=b"[" * 500_000 + b"]" * 500_000, headers=headers)
    assert brackets.status_code == 400
    assert brackets.json()["error"]["code"] == "invalid_json"
    assert "nested deeper than" in brackets.json()["error"]["message"]
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0


def test_a_1000_link_chain_is_submitted_once_per_idempotency_key(
    live: LiveServer, session: requests.Session
) -> None:
    url = f"{live.url}/api/v1/jobs"
    raw = jsontext.dumps(chain_body(LINKS))
    headers = {"Content-Type": "application/json", "Idempotency-Key": "deep-1"}
    first = session.post(url, data=raw, headers=headers, timeout=60)
    assert first.status_code == 201, first.text[:500]
    again = session.post(url, data=raw, headers=headers, timeout=60)
    assert again.status_code == 200, again.text[:500]
    assert again.json()["id"] == first.json()["id"]


def test_a_schedule_of_a_1000_link_chain_stores_and_reads_back(
    live: LiveServer, session: requests.Session
) -> None:
    """A schedule's payload is a JSON column: stored and read without recursion."""
    schedule = {"name": "deep", "cron": "0 3 * * *", "timezone": "UTC", "job": chain_body(LINKS)}
    created = session.post(
        f"{live.url}/api/v1/schedules",
        data=jsontext.dumps(schedule),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert created.status_code == 201, created.text[:500]
    schedule_id = jsontext.loads(created.content)["id"]
    read = session.get(f"{live.url}/api/v1/schedules/{schedule_id}", timeout=60)
    assert read.status_code == 200
    job = jsontext.loads(read.content)["job"]
    assert [n["targetObject"] for n in levels(job)] == [f"{i}.NOOP" for i in range(1, LINKS + 1)]


def test_a_1000_link_chain_is_cancelled_whole_and_purged_whole(
    live: LiveServer, db: Database, session: requests.Session
) -> None:
    """Cancel walks the subtree (a recursive CTE) and retention deletes by root: neither
    minds the depth."""
    answer = session.post(
        f"{live.url}/api/v1/jobs",
        data=jsontext.dumps(chain_body(LINKS)),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 201
    root_id = answer.json()["id"]
    cancelled = session.post(f"{live.url}/api/v1/jobs/{root_id}/cancel", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    stored = queries.get_tree(db, root_id)
    assert stored is not None
    assert {n["status"] for n in flatten(stored)} == {"CANCELLED"}
    assert len(flatten(stored)) == LINKS
    assert retention.purge_finished(db, older_than_seconds=0, at=time.time() + 1) == (1, LINKS)
    assert queries.get_tree(db, root_id) is None
