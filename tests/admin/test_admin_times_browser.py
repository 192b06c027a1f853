"""Times in the console, in a real browser at 1280 px: shown in the browser's zone with the
zone named, and never wrapped (the jobs list's Created column stays one line)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from app.store.database import Database
from tests.admin.browser import TIMEOUT_MS, WIDTHS, log_in
from tests.admin.test_admin import submit
from tests.helpers import ADMIN_TOKEN, LiveServer


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def prague_page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(
        viewport={"width": WIDTHS[0], "height": 900}, locale="en-GB", timezone_id="Europe/Prague"
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx.new_page()
    ctx.close()


def test_the_jobs_lists_times_name_their_zone_on_one_line(
    live: LiveServer, db: Database, prague_page: Page
) -> None:
    long_message = "a long message that takes the room of the row " * 6
    for number in range(3):
        target = f"nightly-price-list-recalculation-{number}-region-central-europe.FAIL"
        submit(db, {"targetObject": target, "parameters": {"message": long_message}})
    page = prague_page
    log_in(page, live.url, ADMIN_TOKEN)
    page.goto(f"{live.url}/admin/jobs")
    created = page.locator("table.jobs tbody tr td:nth-child(7) time")
    assert created.count() == 3
    for index in range(3):
        cell = created.nth(index)
        text = cell.inner_text()
        assert re.fullmatch(r"\d\d/\d\d/\d{4}, \d\d:\d\d:\d\d CES?T", text), text
        assert cell.get_attribute("title", timeout=TIMEOUT_MS).endswith(" UTC")
        lines = cell.evaluate("el => el.getClientRects().length")
        assert lines == 1, f"{text!r} wraps onto {lines} lines"
