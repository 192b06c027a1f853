"""Declarative automation on the model page, in a real browser against a live server with
workers, ticks driven by hand: each asset's status on the graph (cause on hover), a code
version change showing what it made stale before anything runs, and the asset drawer's
policy, evaluation ("why didn't it run?"), refreshes with reasons and lag chart;
screenshots at 1280 and 390 px in artifacts/screenshots/."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app.runner.automation_loop import AutomationLoop
from app.runtime import Runtime
from app.services.runs import RunService
from app.store import automation_reads, graph_changes, graphs
from app.store.database import Database
from tests.admin.browser import log_in, screenshot
from tests.helpers import ADMIN_TOKEN, LiveServer, wait_until

NOOP = {"targetObject": "x.NOOP"}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def title(node: Any) -> str:
    """A graph node's hover text (an SVG <title>)."""
    return str(node.locator("title").text_content())


def statuses(runtime: Runtime, model_id: int) -> dict[str, dict[str, Any]]:
    db = runtime.db
    automation_reads.settle_now(db, model_id, runtime.settings.automation_max_failures)
    rows = graphs.list_assets(db, model_id) or []
    automation_reads.annotate(db, model_id, rows, time.time())
    return {r["name"]: r for r in rows}


@pytest.fixture
def model(runtime: Runtime, db: Database, pool: object) -> dict[str, Any]:
    """raw (reconcile) -> clean (reconcile, code version 1) -> report (reconcile, at most
    10 min behind), and audit (off, at most 0.06 s behind, run once by hand: late after
    raw's refresh brings new data). One tick refreshed raw, clean and report."""
    model_id = graphs.create_model(db, "sales", "Sales figures, kept fresh by automation.")
    ids: dict[str, int] = {}

    def asset(name: str, *ups: str, **values: Any) -> None:
        ids[name] = graph_changes.create_asset(db, model_id, {"name": name, "job": NOOP, **values})
        for up in ups:
            graph_changes.add_dependency(db, model_id, ids[up], ids[name])

    asset("raw", automation="reconcile")
    asset("clean", "raw", automation="reconcile", code_version="1")
    asset("report", "clean", automation="reconcile", freshness={"maximumLagMinutes": 10})
    asset("audit", "raw", freshness={"maximumLagMinutes": 0.001})
    run_service = RunService.for_runtime(runtime)
    from app.store.runs import RunRequest

    run_service.start(model_id, RunRequest(assets=["audit"], downstream=False), "admin")
    wait_until(lambda: statuses(runtime, model_id)["audit"]["status"] != "MISSING", 20)
    settings = replace(runtime.settings, automation_tick_seconds=0.001)
    loop = AutomationLoop(RunService(db, runtime.registry, settings))
    assert [r.requested for r in loop.run_once()] == [["raw", "clean", "report"]]
    wait_until(
        lambda: (
            [s["status"] for s in statuses(runtime, model_id).values()]
            == ["STALE", "FRESH", "FRESH", "FRESH"]
        ),  # audit, clean, raw, report
        20,
        what="the tick's run to end",
    )
    wait_until(lambda: statuses(runtime, model_id)["audit"]["late"], 10, what="audit late")
    return {"id": model_id, "assets": ids, "loop": loop}


def test_statuses_on_the_graph_and_why_in_the_drawer(
    live: LiveServer, runtime: Runtime, page: Page, model: dict[str, Any]
) -> None:
    ids = model["assets"]
    log_in(page, live.url, ADMIN_TOKEN)
    page.goto(f"{live.url}/admin/models/{model['id']}")
    graph = page.locator("#graph")
    expect(graph).to_have_attribute("data-drawn", "4")
    node = {name: page.locator(f"#node-{i}") for name, i in ids.items()}
    expect(node["raw"]).to_have_attribute("data-status", "FRESH")
    expect(node["audit"]).to_have_attribute("data-status", "STALE LATE")
    expect(node["audit"].locator(".pill.st-LATE")).to_have_text("LATE")
    assert "STALE: new data from raw; late by" in title(node["audit"])
    colours = page.evaluate(
        """ids => ids.map(id => getComputedStyle(
            document.querySelector(`#node-${id} .pill rect`)).fill)""",
        [ids["raw"], ids["audit"]],
    )
    assert colours == ["rgb(21, 128, 61)", "rgb(183, 121, 31)"]  # --s-ok, --s-skip
    expect(page.locator("[data-status-count=LATE]")).to_have_text("LATE 1")

    # A new code version of clean: clean and report STALE, with the cause, before any run.
    graph_changes.update_asset(runtime.db, model["id"], ids["clean"], {"code_version": "2"})
    page.reload()
    expect(node["clean"]).to_have_attribute("data-status", "STALE")
    expect(node["report"]).to_have_attribute("data-status", "STALE")
    assert title(node["clean"]).startswith("clean: STALE: new code version of clean\n")
    assert title(node["report"]).startswith("report: STALE: upstream of clean\n")
    expect(node["raw"]).to_have_attribute("data-status", "FRESH")
    row = page.locator(f"#asset-{ids['report']}")
    expect(row.locator("td[data-status]")).to_contain_text("DEPENDENCIES clean")
    screenshot(page, "model-automation")

    # The tick requests clean only (report's policy has time to spare); the drawer says why.
    assert [r.requested for r in model["loop"].run_once()] == [["clean"]]
    wait_until(
        lambda: statuses(runtime, model["id"])["clean"]["status"] == "FRESH", 20, what="clean"
    )
    node["report"].click()
    drawer = page.locator("#drawer")
    expect(drawer.locator("h2")).to_have_text("report")
    expect(drawer.locator("[data-field=automation]")).to_have_text("reconcile")
    expect(drawer.locator("[data-field=freshness]")).to_have_text("maximum lag 10 min")
    expect(drawer.locator("[data-field=status]")).to_contain_text("STALE")
    evaluation = drawer.locator("[data-list=evaluation]")
    expect(evaluation).to_contain_text("did not run it")
    conditions = evaluation.locator(".conditions li")
    expect(conditions.first).to_have_text("✓ status: STALE (DEPENDENCIES clean)")
    expect(evaluation.locator("li.failed")).to_contain_text("✗ freshness policy at stake: lag")
    expect(evaluation.locator("li.failed")).to_contain_text("at most 10 min, deadline in")
    refreshes = drawer.locator("[data-list=refreshes] li")
    expect(refreshes).to_have_count(1)
    expect(refreshes.first).to_contain_text("report is missing (maximum lag 10 min)")
    chart = drawer.locator("[data-chart=lag] svg")
    expect(chart.locator("polyline.lag")).to_have_count(1)
    expect(chart.locator("line.policy")).to_have_count(1)
    expect(chart.locator("circle.now")).to_have_count(1)
    screenshot(page, "model-automation-drawer")

    # clean: requested for its new code version; refreshes newest first with their reasons.
    node["clean"].click()
    expect(drawer.locator("h2")).to_have_text("clean")
    expect(drawer.locator("[data-field=code-version]")).to_have_text("2")
    expect(drawer.locator("[data-list=evaluation]")).to_contain_text("requested a refresh")
    expect(drawer.locator("[data-list=evaluation] .reason")).to_have_text(
        "clean: code version changed to '2'"
    )
    reasons = drawer.locator("[data-list=refreshes] .reason")
    expect(reasons).to_have_text(["clean: code version changed to '2'", "clean is missing"])
    # The job carries its reason too.
    newest = automation_reads.refreshes(runtime.db, ids["clean"], None, 1).items[0]
    page.goto(f"{live.url}/admin/jobs/{newest['job_id']}")
    expect(page.locator("[data-field=refreshes]")).to_contain_text(
        "why: clean: code version changed to '2'"
    )
    page.go_back()

    # audit is off: late, run by hand; its line crosses the policy's.
    node["audit"].click()
    expect(drawer.locator("h2")).to_have_text("audit")
    expect(drawer.locator("[data-field=status]")).to_contain_text("late by")
    expect(drawer.locator("[data-list=refreshes] .reason")).to_have_text(
        ["run by hand (or by its cron)"]
    )
    expect(drawer.locator("[data-chart=lag] polyline.lag.over")).to_have_count(1)
    screenshot(page, "model-automation-late")


def test_a_held_asset_is_released_from_its_drawer_and_events_are_listed(
    live: LiveServer, runtime: Runtime, page: Page, db: Database, pool: object
) -> None:
    model_id = graphs.create_model(db, "feeds", None)
    bad = graph_changes.create_asset(
        db, model_id, {"name": "bad", "job": {"targetObject": "x.FAIL"}, "automation": "reconcile"}
    )
    settings = replace(runtime.settings, automation_tick_seconds=0.001)
    loop = AutomationLoop(RunService(db, runtime.registry, settings))
    for failed in range(1, runtime.settings.automation_max_failures + 1):
        assert [r.requested for r in loop.run_once()] == [["bad"]]
        wait_until(
            lambda n=failed: statuses(runtime, model_id)["bad"]["failures"] == n,  # type: ignore[misc]
            20,
            what=f"failed run {failed} to be recorded",
        )
    assert statuses(runtime, model_id)["bad"]["held"]
    log_in(page, live.url, ADMIN_TOKEN)
    page.goto(f"{live.url}/admin/models/{model_id}")
    expect(page.locator(f"#node-{bad}")).to_have_attribute("data-status", "MISSING HELD")
    events = page.locator("#automation-events tbody tr")
    expect(events).to_have_count(1)
    expect(events.first).to_have_attribute("data-event", "HELD")
    expect(events.first).to_contain_text("held after 3 failed automated runs in a row")
    page.locator(f"#node-{bad}").click()
    drawer = page.locator("#drawer")
    expect(drawer.locator("[data-field=held-error]")).to_contain_text("held after failed runs")
    page.once("dialog", lambda dialog: dialog.accept())
    drawer.locator("[data-action=release]").click()
    expect(drawer.locator("[data-outcome=ok]")).to_have_text("bad released: automation may run it.")
    expect(drawer.locator("[data-action=release]")).to_have_count(0)
    assert not statuses(runtime, model_id)["bad"]["held"]
    page.reload()
    expect(page.locator("#automation-events tbody tr").first).to_have_attribute(
        "data-event", "RELEASED"
    )
    screenshot(page, "model-automation-released")
