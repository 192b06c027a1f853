"""Browser fixtures for the console tests: Debian's chromium driven by Playwright.

One browser per test session, a fresh context (cookies, viewport) per test. The browser is
never downloaded: Playwright launches /usr/bin/chromium, which `make test` installs.
Screenshots go to artifacts/screenshots/ (git-ignored) at a desktop and a phone width.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from jobs import REGISTRY, JobFailed
from jobs.context import JobContext

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
WIDTHS = (1280, 390)
TIMEOUT_MS = 15_000


def flaky(ctx: JobContext) -> dict[str, int]:
    """Fails its first attempt, then works for a moment (so a retry can be watched)."""
    if ctx.attempt == 1:
        raise JobFailed("source locked by another session")
    for step in range(4):
        ctx.progress(25 * step, f"step {step + 1} of 4")
        ctx.logger.info("loading partition %d of 4 for %s", step + 1, ctx.target_id)
        if ctx.wait(float(ctx.parameters.get("stepSeconds", 0.2))):
            break
    return {"rows": 1250}


@pytest.fixture
def flaky_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """The LOADSTEP job type, registered for one test only (its own name: other test modules
    register theirs for the whole session)."""
    monkeypatch.setattr(REGISTRY, "_types", dict(REGISTRY._types))
    REGISTRY.register("LOADSTEP", flaky, "Fails once, then finishes (console tests).")
    return "LOADSTEP"


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (make test installs it)"
        if os.environ.get("CI") == "true":  # as with PostgreSQL: CI must not skip
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    launched = playwright_session.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": WIDTHS[0], "height": 900}, locale="en-GB")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def log_in(page: Page, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/admin/login")
    page.fill("#token", token)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r".*/admin/jobs.*"))


def screenshot(page: Page, name: str) -> None:
    """The page at each width, full length, as artifacts/screenshots/<name>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or {"width": WIDTHS[0], "height": 900}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(original)
