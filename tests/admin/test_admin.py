"""The console's server side through Flask's test client: login and sessions, roles, CSRF,
actions and their outcomes, submit checks, schedules, and 4xx (never 500) on bad input.

Store queries (pagination, filters) are in test_admin_queries.py; the real browser in
test_admin_browser.py.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from app.admin import timeline
from app.domain.payload import Limits, parse_tree
from app.runner.schedule_loop import next_fire_after
from app.runtime import Runtime
from app.security.roles import is_console, required_role
from app.store import actions, queries, schedules, submission, tokens
from app.store.database import Database, now
from app.store.tables import jobs
from app.web import create_app
from jobs import REGISTRY
from tests.helpers import ADMIN_TOKEN, wait_for_chain


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The console's HTTP side is database-agnostic; its queries run on both elsewhere."""
    return sqlite_url


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def reader_token(db: Database) -> str:
    return tokens.create(db, "reader", "console reader")[1]


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def submit(db: Database, payload: dict[str, Any]) -> int:
    return submission.submit(db, parse_tree(payload, Limits(), lambda n: n in REGISTRY))


def csrf(client: FlaskClient) -> str:
    """The CSRF token pages carry: the session's, or before login the login form's."""
    found = CSRF_META.search(client.get("/admin/submit", follow_redirects=True).text)
    assert found is not None
    return found.group(1)


def log_in(client: FlaskClient, token: str = ADMIN_TOKEN) -> None:
    client.get("/admin/login")
    answer = client.post("/admin/login", data={"token": token, "csrf_token": csrf(client)})
    assert answer.status_code == 303, answer.text


def post(client: FlaskClient, path: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": csrf(client), **form})


# -- policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/admin/login", None),
        ("POST", "/admin/login", None),
        ("GET", "/admin/static/console.css", None),
        ("GET", "/admin/jobs", "reader"),
        ("GET", "/admin/chains/3", "reader"),
        ("POST", "/admin/logout", "reader"),
        ("POST", "/admin/submit/check", "reader"),
        ("POST", "/admin/submit", "admin"),
        ("POST", "/admin/jobs/3/cancel", "admin"),
        ("POST", "/admin/jobs/3/retry", "admin"),
        ("POST", "/admin/jobs/3/rerun", "admin"),
        ("POST", "/admin/schedules/1/pause", "admin"),
        ("POST", "/admin/anything-new", "admin"),
    ],
)
def test_console_paths_follow_the_one_policy(method: str, path: str, role: str | None) -> None:
    assert required_role(method, path) == role
    assert is_console(path)


def test_console_paths_are_not_api_paths() -> None:
    assert not is_console("/administrator")
    assert not is_console("/api/v1/jobs")


def test_bearer_token_does_not_open_the_console(client: FlaskClient) -> None:
    answer = client.get("/admin/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/login?next=/admin/jobs"


# -- login and sessions -----------------------------------------------------------------


def test_login_gives_a_strict_httponly_session_cookie(client: FlaskClient) -> None:
    client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        data={"token": ADMIN_TOKEN, "csrf_token": csrf(client), "next": "/admin/chains/1"},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/chains/1"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("jobchain_console=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/admin"):
        assert attribute in cookie, cookie
    assert ADMIN_TOKEN not in cookie
    page = client.get("/admin/jobs")
    assert page.status_code == 200
    assert "env:admin" in page.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/api/v1"])
def test_login_goes_only_to_console_pages(client: FlaskClient, target: str) -> None:
    client.get("/admin/login")
    answer = client.post(
        "/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf(client), "next": target}
    )
    assert answer.headers["Location"] == "/admin/jobs"


def test_bad_or_revoked_token_is_refused(client: FlaskClient, db: Database) -> None:
    revoked, secret = tokens.create(db, "admin", "gone")
    tokens.revoke(db, revoked.id)
    for token in ("jc_nobody", secret, ""):
        client.get("/admin/login")
        answer = client.post("/admin/login", data={"token": token, "csrf_token": csrf(client)})
        assert answer.status_code == 401
        assert "unknown or revoked" in answer.text
    assert client.get("/admin/jobs").status_code == 302


def test_login_without_csrf_is_refused(client: FlaskClient) -> None:
    answer = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 403
    assert "CSRF" in answer.text


def test_revoking_the_token_ends_the_session(client: FlaskClient, db: Database) -> None:
    token, secret = tokens.create(db, "reader", "short-lived")
    log_in(client, secret)
    assert client.get("/admin/jobs").status_code == 200
    tokens.revoke(db, token.id)
    assert client.get("/admin/jobs").status_code == 302


def test_logout_ends_the_session(client: FlaskClient) -> None:
    log_in(client)
    assert post(client, "/admin/logout").status_code == 303
    assert client.get("/admin/jobs").status_code == 302


# -- roles and CSRF ---------------------------------------------------------------------


def test_reader_sees_but_cannot_act(client: FlaskClient, db: Database, reader_token: str) -> None:
    job_id = submit(db, {"targetObject": "A.NOOP"})
    log_in(client, reader_token)
    page = client.get(f"/admin/jobs/{job_id}")
    assert page.status_code == 200
    assert re.search(r'<button type="submit" class="danger"\s+disabled', page.text)
    assert "Read-only: your role is reader" in page.text
    for action in ("cancel", "retry", "rerun"):
        answer = post(client, f"/admin/jobs/{job_id}/{action}")
        assert answer.status_code == 403, action
        assert "needs the admin role" in answer.text
    assert post(client, "/admin/submit", payload='{"targetObject": "NOOP"}').status_code == 403
    assert queries.get_job(db, job_id)["status"] == "WAITING_FOR_DISPATCH"  # type: ignore[index]
    assert queries.count_by_status(db) == {"WAITING_FOR_DISPATCH": 1}


def test_a_post_without_the_csrf_token_is_refused(client: FlaskClient, db: Database) -> None:
    job_id = submit(db, {"targetObject": "A.NOOP"})
    log_in(client)
    for data in ({}, {"csrf_token": "forged"}):
        answer = client.post(f"/admin/jobs/{job_id}/cancel", data=data)
        assert answer.status_code == 403
        assert "CSRF" in answer.text
    fetched = client.post(f"/admin/jobs/{job_id}/cancel", headers={"X-Console-Fetch": "1"})
    assert fetched.status_code == 403
    assert fetched.json is not None and fetched.json["error"]["code"] == "forbidden"
    assert queries.get_job(db, job_id)["status"] == "WAITING_FOR_DISPATCH"  # type: ignore[index]


def test_the_csrf_header_works_for_fetch_calls(client: FlaskClient) -> None:
    log_in(client)
    answer = client.post(
        "/admin/submit/check",
        data={"payload": '{"targetObject": "NOOP"}'},
        headers={"X-CSRF-Token": csrf(client)},
    )
    assert answer.status_code == 200
    assert 'data-valid="true"' in answer.text


# -- actions ----------------------------------------------------------------------------


def test_cancel_then_retry_show_their_outcome(client: FlaskClient, db: Database) -> None:
    root = submit(db, {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "B.NOOP"}]})
    log_in(client)
    answer = post(client, f"/admin/jobs/{root}/cancel")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/admin/jobs/{root}"
    page = client.get(f"/admin/jobs/{root}").text
    assert f"Cancelled job {root} and what had not started below it." in page
    assert queries.count_by_status(db) == {"CANCELLED": 2}

    post(client, f"/admin/jobs/{root}/retry")
    assert (
        f"Retrying job {root}: it is WAITING_FOR_DISPATCH again."
        in client.get(f"/admin/jobs/{root}").text
    )
    post(client, f"/admin/jobs/{root}/retry")
    page = client.get(f"/admin/jobs/{root}").text
    assert "only FAILED or CANCELLED jobs can be retried" in page
    assert 'class="flash flash-error"' in page


def test_rerun_submits_a_copy_of_the_subtree(client: FlaskClient, db: Database) -> None:
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {
                    "targetObject": "155.SLEEP",
                    "parameters": {"seconds": 0.1},
                    "maxAttempts": 2,
                    "timeoutSeconds": 30,
                    "nextJobs": [{"targetObject": "38.NOOP", "executeOnError": True}],
                },
                {"targetObject": "other.NOOP"},
            ],
        },
    )
    middle = queries.get_job(db, root)["next_job_ids"][0]  # type: ignore[index]
    log_in(client)
    answer = post(client, f"/admin/jobs/{middle}/rerun")
    assert answer.status_code == 303
    new_root = int(answer.headers["Location"].rsplit("/", 1)[1])
    copy = queries.get_tree(db, new_root)
    assert copy is not None and copy["parent_id"] is None
    assert (copy["target_object"], copy["parameters"]) == ("155.SLEEP", {"seconds": 0.1})
    assert (copy["max_attempts"], copy["timeout_seconds"]) == (2, 30)
    [child] = copy["next_jobs"]
    assert (child["target_object"], child["execute_on_error"]) == ("38.NOOP", True)
    assert (
        f"Started chain {new_root}, a copy of job {middle}"
        in client.get(answer.headers["Location"]).text
    )
    assert queries.get_job(db, middle)["status"] == "WAITING_FOR_PARENT"  # type: ignore[index]


def test_actions_on_unknown_jobs_are_404(client: FlaskClient) -> None:
    log_in(client)
    for action in ("cancel", "retry", "rerun"):
        assert post(client, f"/admin/jobs/424242/{action}").status_code == 404
        assert post(client, f"/admin/jobs/{2**64}/{action}").status_code == 404


# -- submit -----------------------------------------------------------------------------


def test_check_shows_each_error_at_its_node_and_stores_nothing(
    client: FlaskClient, db: Database
) -> None:
    log_in(client)
    payload = {
        "targetObject": "A.NOOP",
        "nextJobs": [
            {"targetObject": "B.NOOP"},
            {
                "targetObject": "C.NOOP",
                "nextJobs": [{"targetObject": "D.NOPE"}, {"targetObject": "E", "maxAttempts": 0}],
            },
        ],
    }
    answer = post(client, "/admin/submit", payload=json.dumps(payload), action="check")
    assert answer.status_code == 400
    node = re.search(r'data-path="nextJobs\[1\]\.nextJobs\[0\]">(.*?)</li>', answer.text, re.S)
    assert node is not None
    assert "targetObject: unknown job type &#39;NOPE&#39;" in node.group(1)
    other = re.search(r'data-path="nextJobs\[1\]\.nextJobs\[1\]">(.*?)</li>', answer.text, re.S)
    assert other is not None
    assert "maxAttempts: Must be greater than or equal to 1" in other.group(1)
    assert '<li class="node d-1" data-path="nextJobs[0]">' in answer.text  # valid: no errors
    # Submitting the same invalid payload stores nothing either.
    assert (
        post(client, "/admin/submit", payload=json.dumps(payload), action="submit").status_code
        == 400
    )
    assert queries.count_by_status(db) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Paste or upload"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("[" * 100_000, "nested deeper than 20036 levels"),
        (
            json.dumps({"targetObject": "j.JOIN", "parameters": {"expect": 5}}),
            "a JOIN must be a next job",
        ),
    ],
)
def test_check_reports_document_problems(client: FlaskClient, text: str, message: str) -> None:
    log_in(client)
    answer = post(client, "/admin/submit", payload=text, action="check")
    assert answer.status_code == 400
    assert message in answer.text


def test_submit_stores_a_valid_chain(client: FlaskClient, db: Database) -> None:
    log_in(client)
    payload = '{"data": {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "B.NOOP"}]}}'
    checked = post(client, "/admin/submit", payload=payload, action="check")
    assert checked.status_code == 200 and "Valid: 2 jobs" in checked.text
    assert queries.count_by_status(db) == {}
    answer = post(client, "/admin/submit", payload=payload, action="submit")
    assert answer.status_code == 303
    assert queries.count_by_status(db) == {"WAITING_FOR_DISPATCH": 1, "WAITING_FOR_PARENT": 1}


def test_upload_is_read_like_a_paste(client: FlaskClient, db: Database) -> None:
    log_in(client)
    upload = (io.BytesIO(b'{"targetObject": "A.NOOP"}'), "chain.json")
    answer = client.post(
        "/admin/submit",
        data={"csrf_token": csrf(client), "action": "submit", "file": upload},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 303
    assert queries.count_by_status(db) == {"WAITING_FOR_DISPATCH": 1}


# -- pages ------------------------------------------------------------------------------


def test_chain_page_shows_skip_reasons_and_join_arrivals(client: FlaskClient, db: Database) -> None:
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {"targetObject": "sales.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
                {"targetObject": "costs.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
                {"targetObject": "x.NOOP", "nextJobs": [{"targetObject": "y.NOOP"}]},
            ],
        },
    )
    x = queries.get_job(db, root)["next_job_ids"][2]  # type: ignore[index]
    actions.cancel(db, x)
    log_in(client)
    page = client.get(f"/admin/chains/{root}").text
    assert "0 of 2 arrived" in page
    assert f"cancelled: job {x} was cancelled" in page
    assert 'data-chain-state="running"' in page
    inner = queries.get_job(db, x)["next_job_ids"][0]  # type: ignore[index]
    moved = client.get(f"/admin/chains/{inner}")
    assert moved.status_code == 302 and moved.headers["Location"].endswith(
        f"/admin/chains/{root}#job-{inner}"
    )


def test_live_fragments_are_the_changing_part_only(client: FlaskClient, db: Database) -> None:
    root = submit(db, {"targetObject": "A.NOOP"})
    log_in(client)
    for path in ("/admin/jobs", f"/admin/chains/{root}", f"/admin/jobs/{root}"):
        fragment = client.get(path, headers={"X-Console-Fetch": "fragment"})
        assert fragment.status_code == 200
        assert "<html" not in fragment.text and "data-refresh-seconds" in fragment.text


def test_schedules_pause_and_resume(client: FlaskClient, db: Database, reader_token: str) -> None:
    schedule_id = schedules.create(
        db,
        name="nightly",
        cron="0 2 * * *",
        timezone="UTC",
        payload={"targetObject": "NOOP"},
        enabled=True,
        next_fire_at=next_fire_after(now())("0 2 * * *", "UTC"),
    )
    log_in(client)
    page = client.get("/admin/schedules").text
    assert "nightly" in page and "0 2 * * *" in page and "Not fired yet" in page
    assert post(client, f"/admin/schedules/{schedule_id}/pause").status_code == 303
    found = schedules.get_schedule(db, schedule_id)
    assert found is not None and not found["enabled"] and found["next_fire_at"] is None
    assert "Schedule 1 paused." in client.get("/admin/schedules").text
    post(client, f"/admin/schedules/{schedule_id}/resume")
    found = schedules.get_schedule(db, schedule_id)
    assert found is not None and found["enabled"] and found["next_fire_at"] is not None
    assert post(client, "/admin/schedules/99/pause").status_code == 404

    post(client, "/admin/logout")
    log_in(client, reader_token)
    assert post(client, f"/admin/schedules/{schedule_id}/pause").status_code == 403


# -- bad input: 4xx, never 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=NOPE", "status"),
        ("before=abc", "before"),
        ("before=0", "before"),
        (f"before={2**70}", "before"),
        ("limit=-1", "limit"),
        ("limit=100000", "limit"),
        ("since=yesterday", "since"),
        ("since=2026-13-40T00:00", "since"),
        ("until=2020-01-01T00:00&since=2021-01-01T00:00", "until"),
        ("tz=Mars/Olympus", "tz"),
        ("tz=../../etc/passwd", "tz"),
        ("q=%00", "q"),
        ("type=" + "X" * 65, "type"),
        ("target=" + "t" * 256, "target"),
        ("since=0001-01-01T00:00:00&tz=Pacific/Kiritimati", None),
    ],
)
def test_bad_filters_are_400_naming_the_field(
    client: FlaskClient, query: str, field: str | None
) -> None:
    log_in(client)
    answer = client.get(f"/admin/jobs?{query}")
    if field is None:
        assert answer.status_code in (200, 400)
        return
    assert answer.status_code == 400, answer.text
    assert f"<b>{field}</b>" in answer.text
    assert answer.mimetype == "text/html"


@pytest.mark.parametrize(
    "path", ["/admin/jobs/424242", f"/admin/jobs/{2**64}", "/admin/chains/424242", "/admin/nowhere"]
)
def test_unknown_pages_are_404_html_or_json(client: FlaskClient, path: str) -> None:
    log_in(client)
    page = client.get(path)
    assert page.status_code == 404 and page.mimetype == "text/html"
    fetched = client.get(path, headers={"X-Console-Fetch": "fragment"})
    if path != "/admin/nowhere":
        assert fetched.status_code == 404 and fetched.json is not None
        assert fetched.json["error"]["code"] == "not_found"


def test_pages_have_a_strict_content_security_policy(client: FlaskClient) -> None:
    answer = client.get("/admin/login")
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "http://" not in answer.text and "https://" not in answer.text  # no CDN, no fonts


def test_static_assets_are_served_without_login(client: FlaskClient) -> None:
    for name in ("console.css", "console.js"):
        answer = client.get(f"/admin/static/{name}")
        assert answer.status_code == 200
        answer.close()


def event(source: str | None, target: str, attempt: int, at: float, **extra: Any) -> Any:
    reason = extra.pop("reason", "x")
    return {"from_status": source, "to_status": target, "attempt": attempt, "at": at,
            "reason": reason, "started_at": None, "finished_at": None, **extra}  # fmt: skip


READY, RUNNING = "WAITING_FOR_DISPATCH", "PROCESSING"


def test_timeline_bars() -> None:
    """Waiting for the parent, ready (claimed or not) until the function started, running
    until it ended: the worker's stamps on the attempt's end event, not the claim."""
    span = timeline.Span(0.0, 40.0)
    job = {"created_at": 0.0, "started_at": 12.0, "finished_at": 20.0, "attempt": 1}
    job["events"] = [
        event("WAITING_FOR_PARENT", READY, 0, 10.0),
        event(READY, RUNNING, 1, 11.0),  # claimed; waited in its worker's batch
        event(RUNNING, "FINISHED", 1, 21.0, started_at=12.0, finished_at=20.0),
    ]
    assert [(s.kind, s.x, s.width, s.status) for s in timeline.segments(job, span, 40.0)] == [
        ("waiting", 0.0, 250.0, None),
        ("queued", 250.0, 50.0, None),
        ("running", 300.0, 200.0, "FINISHED"),
    ]
    skipped = {"created_at": 0.0, "started_at": None, "finished_at": 5.0, "attempt": 0}
    skipped["events"] = [event("WAITING_FOR_PARENT", "SKIPPED", 0, 5.0)]
    assert [s.kind for s in timeline.segments(skipped, span, 40.0)] == ["waiting"]
    quick = {"created_at": 0.0, "started_at": 40.0, "finished_at": 40.0, "attempt": 1}
    quick["events"] = [
        event(None, READY, 0, 40.0),
        event(READY, RUNNING, 1, 40.0),
        event(RUNNING, "FINISHED", 1, 40.0, started_at=40.0, finished_at=40.0),
    ]
    [*_, run] = timeline.segments(quick, span, 40.0)
    assert run.kind == "running" and run.x + run.width <= timeline.WIDTH and run.width > 0


def test_timeline_draws_every_attempt() -> None:
    span = timeline.Span(0.0, 40.0)
    retried = {"created_at": 0.0, "started_at": 31.0, "finished_at": None, "attempt": 2}
    retried["events"] = [
        event(None, READY, 0, 0.0),
        event(READY, RUNNING, 1, 1.0),
        event(RUNNING, READY, 1, 9.0, reason="automatic retry", started_at=2.0, finished_at=8.0),
        event(READY, RUNNING, 2, 30.0),  # running now, since 31 (the row's start)
    ]
    drawn = [
        (s.kind, s.x, s.width, s.attempt, s.status) for s in timeline.segments(retried, span, 40.0)
    ]
    assert drawn == [
        ("queued", 0.0, 50.0, None, None),
        ("running", 50.0, 150.0, 1, "FAILED"),
        ("queued", 225.0, 550.0, None, None),
        ("running", 775.0, 225.0, 2, "PROCESSING"),
    ]
    # Cancelled while it waited in its worker's batch: it never ran.
    cancelled = {"created_at": 0.0, "started_at": None, "finished_at": 4.0, "attempt": 1}
    cancelled["events"] = [
        event(None, READY, 0, 0.0),
        event(READY, RUNNING, 1, 2.0),
        event(RUNNING, "CANCELLED", 1, 4.0),
    ]
    assert [s.kind for s in timeline.segments(cancelled, span, 40.0)] == ["queued"]
    # A hand-back of a job that never started is no attempt.
    handed = {"created_at": 0.0, "started_at": None, "finished_at": None, "attempt": 0}
    handed["events"] = [
        event(None, READY, 0, 0.0),
        event(READY, RUNNING, 1, 2.0),
        event(RUNNING, READY, 0, 3.0, reason="handed back unstarted"),
    ]
    assert timeline.attempts(handed) == []
    assert [(s.kind, s.x, s.width) for s in timeline.segments(handed, span, 40.0)] == [
        ("queued", 0.0, 1000.0)  # ready since 0, claimed and handed back: ready all along
    ]


def test_join_arrivals_link_their_parents(client: FlaskClient, db: Database, pool: object) -> None:
    root = submit(
        db,
        {
            "targetObject": "A.NOOP",
            "nextJobs": [
                {"targetObject": "sales.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
                {"targetObject": "costs.FAIL", "nextJobs": [{"targetObject": "k.JOIN"}]},
            ],
        },
    )
    wait_for_chain(db, root)
    sales, costs = queries.get_job(db, root)["next_job_ids"]  # type: ignore[index]
    log_in(client)
    page = client.get(f"/admin/chains/{root}").text
    assert "2 of 2 arrived</b> · FAILED" in page
    assert f'href="#job-{sales}" class="arrival s-FINISHED"' in page
    assert f'href="#job-{costs}" class="arrival s-FAILED"' in page


def test_the_cookie_is_secure_behind_https(runtime: Runtime) -> None:
    settings = replace(runtime.settings, public_url="https://jobs.example.com")
    with create_app(runtime=replace(runtime, settings=settings)).test_client() as client:
        client.get("/admin/login")
        answer = client.post(
            "/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf(client)}
        )
        assert "Secure" in answer.headers["Set-Cookie"]


def test_a_session_works_on_every_api_node(runtime: Runtime, client: FlaskClient) -> None:
    """No per-process secret: a session made by one node (or gunicorn worker) is valid on
    another, and a forged or expired cookie on none."""
    log_in(client)
    cookie = client.get_cookie("jobchain_console", path="/admin")
    assert cookie is not None
    token_id, expires, mac = cookie.value.split(".")
    assert tokens.hash_token(ADMIN_TOKEN) not in cookie.value
    with create_app(runtime=runtime).test_client() as other:
        other.set_cookie("jobchain_console", cookie.value, path="/admin")
        assert other.get("/admin/jobs").status_code == 200
        for forged in (
            f"{token_id}.{int(expires) + 9999}.{mac}",
            f"{token_id}.{expires}.{mac[:-1]}{'1' if mac.endswith('0') else '0'}",
            f"{int(token_id) + 1}.{expires}.{mac}",
            "garbage",
        ):
            other.set_cookie("jobchain_console", forged, path="/admin")
            assert other.get("/admin/jobs").status_code == 302, forged


def test_job_page_survives_relatives_that_are_gone(client: FlaskClient, db: Database) -> None:
    root = submit(db, {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "B.NOOP"}]})
    child = queries.get_job(db, root)["next_job_ids"][0]  # type: ignore[index]
    db.write(lambda conn: conn.execute(delete(jobs).where(jobs.c.id == root)))
    log_in(client)
    page = client.get(f"/admin/jobs/{child}")
    assert page.status_code == 200
    assert f'#{root} <span class="hint">(no longer stored)</span>' in page.text


def test_a_body_over_the_limit_is_413(client: FlaskClient) -> None:
    log_in(client)
    token = csrf(client)
    big = {"payload": "x" * 2_000_000, "csrf_token": token}
    page = client.post("/admin/submit", data=big)
    assert page.status_code == 413 and page.mimetype == "text/html"
    fetched = client.post("/admin/submit/check", data=big, headers={"X-Console-Fetch": "check"})
    assert fetched.status_code == 413
    assert fetched.json is not None and fetched.json["error"]["code"] == "request_entity_too_large"
