"""The console's queries (app/store/console.py) on SQLite and PostgreSQL: keyset pages that
never skip or repeat a job, every filter, the bounded message search, capped status counts,
a chain in display order; and on SQLite, that every statement of every page uses an index."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from app.admin import timeline
from app.domain.payload import Limits, parse_tree
from app.runtime import Runtime
from app.store import actions, console, graph_changes, graphs, queries, submission
from app.store.console import JobQuery
from app.store.database import Database
from app.store.tables import jobs
from app.web import create_app
from jobs import REGISTRY
from tests.admin.query_plans import login, sqlite_plan, statements, unindexed
from tests.helpers import ADMIN_TOKEN, wait_for_chain


def submit(db: Database, payload: dict[str, object]) -> int:
    return submission.submit(db, parse_tree(payload, Limits(), lambda n: n in REGISTRY))


@pytest.fixture
def mixed(db: Database) -> list[int]:
    """40 jobs: chains of FAIL (with a skipped child) and NOOP jobs, created a minute apart.
    Returns all ids, newest first."""
    for i in range(10):
        root = submit(db, {"targetObject": f"{i}.NOOP", "nextJobs": [{"targetObject": "x.FAIL"}]})
        if i % 3 == 0:
            actions.cancel(db, root)
        submit(db, {"targetObject": f"lonely-{i}.SLEEP", "parameters": {"seconds": 0}})
        submit(db, {"targetObject": "155.NOOP"})
    with db.read() as conn:
        ids = [row.id for row in conn.execute(jobs.select().order_by(jobs.c.id.desc()))]

    def spread(conn: object) -> None:
        for job_id in ids:  # one minute per id, oldest first; messages to search for
            conn.execute(  # type: ignore[attr-defined]
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(created_at=1_700_000_000 + 60 * job_id, message=f"note {job_id} 100%_done")
            )

    db.write(spread)
    return ids


def all_pages(db: Database, query: JobQuery, limit: int) -> tuple[list[int], int]:
    """Every id the pages return, following the cursor to the end; and how many pages."""
    seen: list[int] = []
    before, pages = None, 0
    while True:
        page = console.list_jobs(db, query, limit, before)
        pages += 1
        seen.extend(job["id"] for job in page.items)
        if page.next_cursor is None:
            return seen, pages
        assert page.next_cursor != before
        before = page.next_cursor


@pytest.mark.parametrize("limit", [1, 7, 40, 100])
def test_keyset_pages_cover_every_job_once(db: Database, mixed: list[int], limit: int) -> None:
    seen, _ = all_pages(db, JobQuery(), limit)
    assert seen == mixed


def test_filters(db: Database, mixed: list[int]) -> None:
    def ids(**fields: object) -> list[int]:
        return all_pages(db, JobQuery(**fields), 5)[0]  # type: ignore[arg-type]

    assert len(ids(status="CANCELLED")) == 8  # 4 cancelled roots and their children
    assert {queries.get_job(db, i)["job_type"] for i in ids(job_type="SLEEP")} == {"SLEEP"}  # type: ignore[index]
    assert len(ids(target_object="155.NOOP")) == 10
    assert len(ids(target_object="155.NOOP", status="WAITING_FOR_DISPATCH", job_type="NOOP")) == 10
    assert ids(target_object="155.NOOP", status="CANCELLED") == []
    assert ids(status="FINISHED") == []
    newest = mixed[0]
    assert ids(text=f"note {newest} ") == [newest]
    # LIKE wildcards in the search text are literal characters.
    assert ids(text="100%_done") == mixed
    assert ids(text="100%_don_") == []
    assert ids(text="NOTE") == mixed  # case-insensitive on both databases
    t = 1_700_000_000 + 60 * mixed[5]
    assert ids(since=t, until=t + 60 * 3) == mixed[2:6]
    assert ids(since=t + 1e9) == []
    assert ids(until=0) == []


def test_a_message_search_is_bounded_and_continues(
    db: Database, mixed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "SCAN_WINDOW", 6)
    page = console.list_jobs(db, JobQuery(text="note"), 50, None)
    assert [job["id"] for job in page.items] == mixed[:6]
    assert page.searched_to == mixed[5] and page.next_cursor == mixed[5]
    seen, pages = all_pages(db, JobQuery(text="note"), 50)
    assert seen == mixed and pages == 7
    rare, _ = all_pages(db, JobQuery(text=f"note {mixed[-1]} "), 50)
    assert rare == [mixed[-1]]
    # Status and job type together have no index of their own: the same bounded search.
    both = JobQuery(status="WAITING_FOR_PARENT", job_type="FAIL")
    assert console.list_jobs(db, both, 50, None).searched_to == mixed[5]
    waiting = all_pages(db, JobQuery(status="WAITING_FOR_PARENT"), 50)[0]
    assert all_pages(db, both, 50)[0] == waiting  # (all waiting jobs are FAIL jobs)


def test_status_counts_stop_at_the_cap(
    db: Database, mixed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert console.status_counts(db, None, None) == {
        "WAITING_FOR_DISPATCH": 26,
        "WAITING_FOR_PARENT": 6,
        "CANCELLED": 8,
    }
    monkeypatch.setattr(console, "COUNT_CAP", 10)
    assert console.status_counts(db, None, None)["WAITING_FOR_DISPATCH"] == 11
    t = 1_700_000_000 + 60 * mixed[0]
    assert sum(console.status_counts(db, t - 60, None).values()) == 2


def test_chain_in_display_order_with_joins(db: Database) -> None:
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {"targetObject": "B.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
                {
                    "targetObject": "C.NOOP",
                    "nextJobs": [
                        {"targetObject": "k.JOIN", "nextJobs": [{"targetObject": "D.NOOP"}]}
                    ],
                },
            ],
        },
    )
    chain = console.get_chain(db, root)
    assert chain is not None and chain.active
    order = [(n["target_object"], n["depth"]) for n in chain.nodes]
    assert order == [
        ("A.NOOP", 0),
        ("B.NOOP", 1),
        ("k.JOIN", 2),
        ("C.NOOP", 1),
        ("k.JOIN", 2),
        ("D.NOOP", 3),
    ]
    [join] = chain.joins.values()
    assert (join["key"], join["expected"], join["arrivals"]) == ("k", 2, [])
    assert chain.nodes[0]["ready_at"] is not None and chain.nodes[1]["ready_at"] is None
    assert console.get_chain(db, chain.nodes[1]["id"]) is None  # not a root
    assert console.get_chain(db, 424242) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_console_query_uses_an_index(runtime: Runtime) -> None:
    """Each statement the pages run, explained on SQLite: no table is read without an index
    (walking the primary key newest first under a LIMIT is a bounded index walk)."""
    db = runtime.db
    root = submit(db, {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "k.FAIL"}]})
    model, asset = model_with_two_assets(db, root)
    app = create_app(runtime=runtime)
    client: FlaskClient = app.test_client()
    login(client, ADMIN_TOKEN)
    paths = [
        "/admin/jobs",
        "/admin/jobs?status=FAILED&before=100",
        "/admin/jobs?type=NOOP",
        "/admin/jobs?target=A.NOOP",
        "/admin/jobs?q=boom&status=FAILED",
        "/admin/jobs?q=boom",
        "/admin/jobs?since=2020-01-01T00:00&until=2030-01-01T00:00&tz=Europe/Berlin",
        "/admin/jobs?since=2020-01-01T00:00&type=FAIL&q=x",
        f"/admin/chains/{root}",
        f"/admin/jobs/{root}",
        f"/admin/models/{model}",
        f"/admin/models/{model}/assets/{asset}",
    ]  # (the schedules and models pages list them all: reading them all is their point)
    flagged = []
    for path in paths:
        with statements(db.engine) as seen:
            assert client.get(path).status_code == 200, path
        assert seen, path
        for sql, params in seen:
            plan = sqlite_plan(db.engine, sql, params)
            flagged.extend(f"{path}: {line} in {sql}" for line in unindexed(plan, sql))
    assert not flagged, "\n".join(flagged)


def model_with_two_assets(db: Database, refresh: int) -> tuple[int, int]:
    """A model whose asset "report" depends on "load", refreshed by job ``refresh``."""
    model = graphs.create_model(db, "m", None)
    load, report = (
        graph_changes.create_asset(db, model, {"name": n, "job": {"targetObject": "A.NOOP"}})
        for n in ("load", "report")
    )
    graph_changes.add_dependency(db, model, load, report)
    db.write(lambda conn: graph_changes.record_refreshes(conn, {load: refresh}))
    return model, report


def test_every_page_renders_on_both_databases(runtime: Runtime) -> None:
    db = runtime.db
    root = submit(db, {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]})
    model, asset = model_with_two_assets(db, root)
    client: FlaskClient = create_app(runtime=runtime).test_client()
    login(client, ADMIN_TOKEN)
    for path in (
        "/admin/jobs?status=WAITING_FOR_PARENT&type=JOIN&q=x&since=2020-01-01T00:00",
        "/admin/jobs?target=A.NOOP&until=2030-01-01T00:00&tz=America/New_York",
        f"/admin/chains/{root}",
        f"/admin/jobs/{root}",
        "/admin/submit",
        "/admin/schedules",
        "/admin/models",
        f"/admin/models/{model}",
        f"/admin/models/{model}/assets/{asset}",
    ):
        assert client.get(path).status_code == 200, path


def test_a_retried_jobs_timeline_shows_every_attempt(
    flaky_type: str, runtime: Runtime, pool: object
) -> None:
    """The chain's timeline draws each attempt's run from the job's events (the failed
    first one too), in the tree's order and indentation."""
    db = runtime.db
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {
                    "targetObject": f"load.{flaky_type}",
                    "parameters": {"stepSeconds": 0.01},
                    "maxAttempts": 2,
                    "nextJobs": [{"targetObject": "report.NOOP"}],
                }
            ],
        },
    )
    wait_for_chain(db, root)
    chain = console.get_chain(db, root)
    assert chain is not None
    load = chain.nodes[1]
    assert (load["status"], load["attempt"]) == ("FINISHED", 2)
    runs = timeline.attempts(load)
    assert [(a.number, a.status) for a in runs] == [(1, "FAILED"), (2, "FINISHED")]
    assert runs[0].ended is not None and runs[1].started is not None
    assert runs[0].ended <= runs[1].started

    client: FlaskClient = create_app(runtime=runtime).test_client()
    login(client, ADMIN_TOKEN)
    html = client.get(f"/admin/chains/{root}").text
    timeline_html = html[html.index('<div class="timeline">') :]
    labels = re.findall(r'class="lane-label d-(\d+)"[^>]*>([^<]+)<', timeline_html)
    assert labels == [("0", "A.NOOP"), ("1", f"load.{flaky_type}"), ("2", "report.NOOP")]
    lane = timeline_html.split('class="lane"')[2]  # load's lane
    drawn = re.findall(r'<rect class="running s-(\w+)"[^>]*data-attempt="(\d)"', lane)
    assert drawn == [("FAILED", "1"), ("FINISHED", "2")]
