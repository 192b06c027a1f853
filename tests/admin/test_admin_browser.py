"""The console in a real browser (Debian's chromium via Playwright) against a real server
with workers: what an operator does, end to end, with screenshots of every page at 1280 and
390 px in artifacts/screenshots/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app.domain.payload import Limits, parse_tree
from app.runner.schedule_loop import fire_due
from app.runtime import Runtime
from app.store import notifications, queries, schedules, submission, tokens
from app.store.database import Database, now
from jobs import REGISTRY
from tests.admin.browser import log_in, screenshot
from tests.helpers import ADMIN_TOKEN, LiveServer, status_of, wait_for_chain

LIVE_TIMEOUT_MS = 20_000


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """What the browser sees does not depend on the database; the queries run on both in
    test_admin_queries.py."""
    return sqlite_url


def submit(db: Database, payload: dict[str, Any]) -> int:
    return submission.submit(db, parse_tree(payload, Limits(), lambda n: n in REGISTRY))


def test_find_a_failure_retry_it_and_watch_the_chain_finish(
    flaky_type: str, live: LiveServer, pool: object, db: Database, page: Page
) -> None:
    root = submit(
        db,
        {
            "targetObject": "nightly.NOOP",
            "nextJobs": [
                {
                    "targetObject": f"sales.{flaky_type}",
                    "parameters": {"stepSeconds": 0.4},
                    "nextJobs": [
                        {"targetObject": "datamart.SLEEP", "parameters": {"seconds": 0.8}},
                        {"targetObject": "month.JOIN"},
                    ],
                },
                {
                    "targetObject": "costs.NOOP",
                    "nextJobs": [
                        {
                            "targetObject": "month.JOIN",
                            "nextJobs": [{"targetObject": "report.NOOP"}],
                        }
                    ],
                },
            ],
        },
    )
    wait_for_chain(db, root)
    tree = queries.get_tree(db, root)
    assert tree is not None
    failed = tree["next_jobs"][0]["id"]
    skipped = tree["next_jobs"][0]["next_jobs"][0]["id"]

    log_in(page, live.url, ADMIN_TOKEN)
    page.select_option("select[name=status]", "FAILED")
    page.get_by_role("button", name="Filter").click()
    row = page.locator(f"#job-{failed}")
    expect(row).to_contain_text("source locked by another session")
    # The failed job, and the join it failed: both of the join's nodes end FAILED with it.
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    expect(page.locator("table.jobs tbody tr", has_text="month.JOIN")).to_have_count(2)
    screenshot(page, "jobs-filtered")

    row.get_by_role("link", name=f"chain {root}").click()
    expect(page.locator(f"#job-{failed}")).to_have_attribute("data-status", "FAILED")
    expect(page.locator(f"#job-{skipped}")).to_contain_text(
        f"skipped: job {failed} (sales.{flaky_type}) failed"
    )
    screenshot(page, "chain-failed")

    page.locator(f"#job-{failed} a.target").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash-ok")).to_contain_text(f"Retrying job {failed}")

    page.get_by_role("link", name="whole chain").click()
    page.evaluate("window.stillTheSamePage = true")
    state = page.locator("[data-chain-state]")
    expect(state).to_have_attribute("data-chain-state", "running")
    expect(page.locator(f"#job-{failed}")).to_have_attribute(
        "data-status", "PROCESSING", timeout=LIVE_TIMEOUT_MS
    )
    screenshot(page, "chain-running")
    expect(state).to_have_attribute("data-chain-state", "done", timeout=LIVE_TIMEOUT_MS)
    statuses = page.locator(".tree .node").evaluate_all("ns => ns.map(n => n.dataset.status)")
    assert statuses == ["FINISHED"] * 7
    expect(page.locator(".join").first).to_contain_text("2 of 2 arrived · FIRED")
    assert page.evaluate("window.stillTheSamePage") is True  # updated in place, not reloaded
    screenshot(page, "chain-finished")

    page.locator(f"#job-{failed} a.target").click()
    expect(page.locator(".facts").first).to_contain_text("2 (1 of 1 since the last retry)")
    screenshot(page, "job")
    page.goto(f"{live.url}/admin/jobs")
    expect(page.locator("table.jobs tbody tr")).to_have_count(7)
    screenshot(page, "jobs")


def test_submit_shows_each_error_at_its_node_before_storing(
    live: LiveServer, db: Database, page: Page
) -> None:
    payload: dict[str, Any] = {
        "targetObject": "155.NOOP",
        "parameters": {"mode": "full"},
        "nextJobs": [
            {"targetObject": "38.NOOP", "executeOnError": True},
            {"targetObject": "datamart.NOOP", "nextJobs": [{"targetObject": "report.NOPE"}]},
        ],
    }
    log_in(page, live.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Submit").click()
    page.fill("#payload", json.dumps(payload, indent=2))
    bad = page.locator('[data-path="nextJobs[1].nextJobs[0]"]')
    expect(bad.locator(".node-error")).to_have_text("targetObject: unknown job type 'NOPE'")
    expect(page.locator(".node-error")).to_have_count(1)
    screenshot(page, "submit-error")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator('[data-path="nextJobs[1].nextJobs[0]"] .node-error')).to_be_visible()
    assert queries.count_by_status(db) == {}  # nothing stored

    payload["nextJobs"][1]["nextJobs"][0]["targetObject"] = "report.NOOP"
    page.fill("#payload", json.dumps(payload, indent=2))
    expect(page.locator("[data-valid]")).to_contain_text("Valid: 4 jobs")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator(".flash-ok")).to_contain_text("Submitted chain")
    assert sum(queries.count_by_status(db).values()) == 4


def test_a_reader_cannot_cancel(live: LiveServer, db: Database, page: Page) -> None:
    job = submit(db, {"targetObject": "155.NOOP"})  # no workers: it stays waiting
    log_in(page, live.url, tokens.create(db, "reader", "operator on call")[1])
    page.goto(f"{live.url}/admin/jobs/{job}")
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    expect(page.get_by_text("Read-only: your role is reader")).to_be_visible()
    # The server refuses it too, even with the page's own CSRF token.
    refused = page.evaluate(
        """async () => {
            const form = document.querySelector('form[action$="/cancel"]');
            const answer = await fetch(form.action, {method: "POST", body: new FormData(form)});
            return [answer.status, await answer.text()];
        }"""
    )
    assert refused[0] == 403 and "needs the admin role" in refused[1]
    assert status_of(db, job) == "WAITING_FOR_DISPATCH"
    screenshot(page, "job-reader")


def test_a_post_without_the_csrf_token_is_refused(
    live: LiveServer, db: Database, page: Page
) -> None:
    job = submit(db, {"targetObject": "155.NOOP"})
    log_in(page, live.url, ADMIN_TOKEN)
    for body in ("null", "new URLSearchParams({csrf_token: 'forged'})"):
        status = page.evaluate(
            f"async url => (await fetch(url, {{method: 'POST', body: {body}}})).status",
            f"{live.url}/admin/jobs/{job}/cancel",
        )
        assert status == 403
    assert status_of(db, job) == "WAITING_FOR_DISPATCH"


def test_login_and_schedules_pages(
    live: LiveServer, runtime: Runtime, db: Database, page: Page
) -> None:
    page.goto(f"{live.url}/admin/jobs")
    expect(page).to_have_url(f"{live.url}/admin/login?next=/admin/jobs")
    screenshot(page, "login")
    page.fill("#token", "jc_wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")

    payload = {"targetObject": "nightly.NOOP", "nextJobs": [{"targetObject": "155.NOOP"}]}
    for name, cron in [("nightly-datamart", "0 2 * * *"), ("price-lists", "*/15 6-18 * * 1-5")]:
        schedules.create(
            db,
            name=name,
            cron=cron,
            timezone="Europe/Berlin",
            payload=payload,
            enabled=True,
            next_fire_at=now() - 1,
        )
    fire_due(db, runtime.registry, runtime.settings)
    log_in(page, live.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Schedules").click()
    first = page.locator("#schedule-1")
    expect(first.get_by_role("link", name="chain")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    first.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash-ok")).to_have_text("Schedule 1 paused.")
    expect(first.get_by_role("button", name="Resume")).to_be_enabled()
    found = schedules.get_schedule(db, 1)
    assert found is not None and not found["enabled"]
    screenshot(page, "schedules")


def test_create_an_alert_rule_with_the_form(live: LiveServer, db: Database, page: Page) -> None:
    """A bad target is refused next to its field, nothing stored; fixed, the rule is listed."""
    log_in(page, live.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Alerts").click()
    form = page.locator("#new-rule")
    expect(form).to_have_attribute("open", "")  # no rule yet: the form is open
    screenshot(page, "alerts-empty")
    form.get_by_label("Name", exact=True).fill("lpg-pager")
    form.get_by_label("job_failed").check()
    form.get_by_label("lease_expired").check()
    form.get_by_label("Channel").select_option("webhook")
    target = form.get_by_label("Webhook URL, or e-mail addresses separated by commas")
    target.fill("hooks.example.com/lpg")
    form.get_by_label("Only target object").fill("155.*")
    form.get_by_role("button", name="Create rule").click()
    expect(page.locator("#error-target")).to_have_text("must be an http:// or https:// URL")
    expect(target).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Name", exact=True)).to_have_value("lpg-pager")
    expect(form.get_by_label("lease_expired")).to_be_checked()
    assert notifications.list_rules(db) == []
    screenshot(page, "alerts-error")

    target.fill("https://hooks.example.com/lpg")
    form.get_by_role("button", name="Create rule").click()
    expect(page.locator(".flash-ok")).to_have_text("Alert rule lpg-pager created.")
    rule = page.locator("#rule-1")
    expect(rule.get_by_role("heading")).to_contain_text("lpg-pager")
    expect(rule).to_contain_text("https://hooks.example.com/lpg")
    expect(rule).to_contain_text("155.*")
    expect(rule.get_by_role("button", name="Disable")).to_be_enabled()
    [stored] = notifications.list_rules(db)
    assert stored["events"] == ["job_failed", "lease_expired"] and stored["channel"] == "webhook"
    screenshot(page, "alerts")


def test_a_retried_jobs_timeline_shows_every_attempt(
    flaky_type: str, live: LiveServer, pool: object, db: Database, page: Page
) -> None:
    root = submit(
        db,
        {
            "targetObject": "nightly.NOOP",
            "nextJobs": [
                {
                    "targetObject": f"sales.{flaky_type}",
                    "parameters": {"stepSeconds": 0.1},
                    "maxAttempts": 2,
                    "nextJobs": [
                        {
                            "targetObject": "datamart.SLEEP",
                            "parameters": {"seconds": 0.2},
                            "nextJobs": [{"targetObject": "report.NOOP"}],
                        }
                    ],
                },
                {"targetObject": "costs.NOOP"},
            ],
        },
    )
    wait_for_chain(db, root)
    log_in(page, live.url, ADMIN_TOKEN)
    page.goto(f"{live.url}/admin/chains/{root}")
    lanes = page.locator(".timeline .lane")
    expect(lanes).to_have_count(5)
    sales = lanes.nth(1)
    expect(sales.locator(".lane-label")).to_have_text(f"sales.{flaky_type}")
    runs = sales.locator("rect.running")
    expect(runs).to_have_count(2)
    expect(runs.nth(0)).to_have_attribute("class", "running s-FAILED")
    expect(runs.nth(0)).to_have_attribute("data-attempt", "1")
    expect(runs.nth(1)).to_have_attribute("class", "running s-FINISHED")
    expect(runs.nth(1)).to_have_attribute("data-attempt", "2")
    first, second = (float(runs.nth(i).get_attribute("x") or "") for i in (0, 1))
    assert first < second
    # The labels keep the tree's indentation, at both widths.
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        left = [
            box["x"] if (box := lanes.nth(i).locator(".lane-label").bounding_box()) else None
            for i in range(5)
        ]
        assert None not in left
        nightly, sales_x, datamart, report, costs = left
        assert nightly < sales_x < datamart < report and costs == sales_x  # type: ignore[operator]
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "chain-retried-timeline")
