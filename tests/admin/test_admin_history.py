"""What the console shows of a job's story: a worker's hand-back stays out of the status
history (the events API keeps and marks it), a JOIN node's count is its arrivals (no "2/1"
after its join reopened) and its message follows the decision that stood, and a join's page
links what it started, also in another chain."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.runner.worker_pool import WorkerPool
from app.store import actions, claims, queries, recovery
from app.store.database import Database
from tests.admin.test_admin import app, client, database_url, log_in, submit  # noqa: F401
from tests.helpers import AUTH, flatten, wait_for_chain
from tests.store.test_joins import flaky  # noqa: F401  (registers FLAKY)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_a_hand_back_is_in_the_event_log_not_in_the_status_history(
    client: FlaskClient,  # noqa: F811
    db: Database,
    request: pytest.FixtureRequest,
) -> None:
    job_id = submit(db, {"targetObject": "NOOP"})
    claimed = claims.claim(db, "stuck-worker", lease_seconds=60)
    assert [c.id for c in claimed] == [job_id]
    assert recovery.release_unstarted(db, claimed) == 1  # never started: handed back
    request.getfixturevalue("pool")  # workers from now on: one of them runs it
    wait_for_chain(db, job_id)

    events = client.get(f"/api/v1/jobs/{job_id}/events", headers=AUTH).get_json()["items"]
    moves = [(e["reason"], e["attempt"], e["internal"]) for e in events]
    assert moves == [
        ("submit", 0, False),
        ("claim", 1, True),
        ("handed back unstarted", 0, True),
        ("claim", 1, False),
        ("finish", 1, False),
    ]

    log_in(client)
    page = text_of(client.get(f"/admin/jobs/{job_id}").text)
    history = page.split("Status history", 1)[1].split("Log tail", 1)[0]
    assert "handed back" not in history
    assert [reason for reason in ("submit", "claim", "finish") if reason in history] == [
        "submit",
        "claim",
        "finish",
    ]
    assert history.count("PROCESSING") == 2  # claimed once (to), finished (from)


def join_nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in flatten(tree) if n["job_type"] == "JOIN"]


def test_a_reopened_join_that_fired_shows_arrivals_and_its_decision(
    client: FlaskClient,  # noqa: F811
    db: Database,
    pool: WorkerPool,
) -> None:
    join = {"targetObject": "profit.JOIN"}
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {"targetObject": "A1.FLAKY", "nextJobs": [join]},
                {
                    "targetObject": "A2.NOOP",
                    "nextJobs": [{**join, "nextJobs": [{"targetObject": "B.NOOP"}]}],
                },
            ],
        },
    )
    tree = wait_for_chain(db, root)
    assert [n["message"].endswith("FAILED") for n in join_nodes(tree)] == [True, True]
    flaky_id = next(n["id"] for n in flatten(tree) if n["target_object"] == "A1.FLAKY")
    actions.retry(db, flaky_id)  # reopens the join, which then fires
    tree = wait_for_chain(db, root)
    nodes = join_nodes(tree)
    assert [n["status"] for n in nodes] == ["FINISHED", "FINISHED"]
    assert all("FAILED" not in n["message"] and "FIRED" in n["message"] for n in nodes)
    again = next(n for n in nodes if n["attempt"] == 2)  # under the retried parent

    log_in(client)
    chain = text_of(client.get(f"/admin/chains/{root}").text)
    assert "2/1" not in chain and "attempt 2 " in chain
    page = text_of(client.get(f"/admin/jobs/{again['id']}").text)
    assert "Attempt 2 (arrivals at its join; a JOIN node is not retried)" in page
    message = page.split(" Message ", 1)[1].split(" Created ", 1)[0]
    assert message.strip().endswith("(parent FINISHED); join FIRED"), message


def test_a_cross_submission_join_links_the_job_it_started(
    client: FlaskClient,  # noqa: F811
    db: Database,
    pool: WorkerPool,
) -> None:
    def branch(name: str, **more: Any) -> dict[str, Any]:
        node = {"targetObject": "month.JOIN", "parameters": {"batch": "2024-03", "expect": 2}}
        return {"targetObject": f"{name}.NOOP", "nextJobs": [{**node, **more}]}

    owner_chain = submit(db, branch("sales", nextJobs=[{"targetObject": "report.NOOP"}]))
    other_chain = submit(db, branch("expenses"))
    wait_for_chain(db, other_chain)
    wait_for_chain(db, owner_chain)
    owner = queries.get_tree(db, owner_chain)
    assert owner is not None
    report = next(n for n in flatten(owner) if n["target_object"] == "report.NOOP")
    assert report["status"] == "FINISHED"
    other = queries.get_tree(db, other_chain)
    assert other is not None
    node = join_nodes(other)[0]

    log_in(client)
    link = f'href="/admin/jobs/{report["id"]}">#{report["id"]} report.NOOP</a>'
    assert link in client.get(f"/admin/chains/{other_chain}").text
    assert f"in chain {owner_chain}" in text_of(client.get(f"/admin/chains/{other_chain}").text)
    job_page = client.get(f"/admin/jobs/{node['id']}").text
    assert "Join started" in job_page
    assert f'href="/admin/jobs/{report["id"]}">#{report["id"]} report.NOOP</a>' in job_page
