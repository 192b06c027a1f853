"""The models pages in a real browser (Debian's chromium via Playwright) against a real
server with workers: the graph drawn in levels with each asset's last refresh, the asset
drawer adding a dependency, refusing a cycle with its message and deleting one after a
confirmation; screenshots at 1280 and 390 px in artifacts/screenshots/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app.domain.payload import Limits, parse_tree
from app.store import graph_changes, graphs, submission, tokens
from app.store.database import Database
from jobs import REGISTRY
from tests.admin.browser import log_in, screenshot
from tests.helpers import ADMIN_TOKEN, LiveServer, wait_for_chain

# name: (job, what it depends on)
ASSETS: dict[str, tuple[str, list[str]]] = {
    "raw_prices": ("155.NOOP", []),
    "fx_rates": ("fx.FAIL", []),
    "price_lists": ("155.NOOP", ["raw_prices", "fx_rates"]),
    "cfs_margins": ("38.NOOP", ["price_lists"]),
    "daily_summary_for_the_sales_team": ("summary.NOOP", ["cfs_margins", "fx_rates"]),
    "archive": ("archive.NOOP", []),
}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """What the browser sees does not depend on the database."""
    return sqlite_url


@pytest.fixture
def model(db: Database, pool: object) -> dict[str, Any]:
    """The price-aggregates model: two roots, a chain of three levels on top, an asset on its
    own; raw_prices refreshed (FINISHED), fx_rates refreshed and FAILED, the rest never."""
    model_id = graphs.create_model(db, "price-aggregates", "Price lists, then margins on them.")
    ids = {
        name: graph_changes.create_asset(db, model_id, {"name": name, "job": {"targetObject": job}})
        for name, (job, _) in ASSETS.items()
    }
    for name, (_, upstreams) in ASSETS.items():
        for upstream in upstreams:
            graph_changes.add_dependency(db, model_id, ids[upstream], ids[name])
    refreshed = {}
    for name in ("raw_prices", "fx_rates"):
        tree = parse_tree({"targetObject": ASSETS[name][0]}, Limits(), lambda n: n in REGISTRY)
        refreshed[ids[name]] = submission.submit(db, tree)
        wait_for_chain(db, refreshed[ids[name]])
    db.write(lambda conn: graph_changes.record_refreshes(conn, refreshed))
    return {"id": model_id, "assets": ids}


def node(page: Page, asset_id: int) -> Any:
    return page.locator(f"#node-{asset_id}")


def centre(page: Page, asset_id: int) -> float:
    """Where an asset is drawn across the page (a level's assets are centred on one line)."""
    box = node(page, asset_id).bounding_box()
    assert box is not None
    return round(box["x"] + box["width"] / 2, 1)


def test_the_graph_in_levels_and_the_drawer_adds_refuses_and_deletes(
    live: LiveServer, db: Database, page: Page, model: dict[str, Any]
) -> None:
    ids = model["assets"]
    log_in(page, live.url, ADMIN_TOKEN)
    page.get_by_role("link", name="Models").click()
    row = page.locator(f"#model-{model['id']}")
    expect(row).to_contain_text("price-aggregates")
    expect(row.locator("td.num")).to_have_text("6")
    screenshot(page, "models")

    row.get_by_role("link", name="price-aggregates").click()
    graph = page.locator("#graph")
    expect(graph).to_have_attribute("data-drawn", "6")
    expect(graph.locator("path.edge")).to_have_count(5)
    # Levels left to right, each asset coloured by its last refresh.
    x = {name: centre(page, asset_id) for name, asset_id in ids.items()}
    assert x["raw_prices"] == x["fx_rates"] == x["archive"]
    assert x["raw_prices"] < x["price_lists"] < x["cfs_margins"]
    assert x["cfs_margins"] < x["daily_summary_for_the_sales_team"]
    expect(node(page, ids["raw_prices"])).to_have_attribute("data-state", "FINISHED")
    expect(node(page, ids["fx_rates"])).to_have_attribute("data-state", "FAILED")
    expect(node(page, ids["cfs_margins"])).to_have_attribute("data-state", "never")
    expect(node(page, ids["fx_rates"])).to_contain_text("FAILED ·")
    expect(node(page, ids["archive"])).to_contain_text("never refreshed")
    fills = page.evaluate(
        """ids => ids.map(id => getComputedStyle(
            document.querySelector(`#node-${id} .stripe`)).fill)""",
        [ids["raw_prices"], ids["fx_rates"]],
    )
    assert fills == ["rgb(21, 128, 61)", "rgb(198, 40, 40)"]  # --s-ok, --s-fail
    expect(page.get_by_role("button", name="Run")).to_be_enabled()
    screenshot(page, "model")

    # Add: archive depends on daily_summary_for_the_sales_team.
    page.evaluate("window.stillTheSamePage = true")
    node(page, ids["archive"]).click()
    drawer = page.locator("#drawer")
    expect(drawer.locator("h2")).to_have_text("archive")
    expect(page).to_have_url(f"{live.url}/admin/models/{model['id']}/assets/{ids['archive']}")
    expect(drawer.locator("[data-list=depends-on]")).to_contain_text("nothing (level 0)")
    drawer.get_by_text("Add dependency").click()
    drawer.get_by_label("archive depends on").select_option(
        label="daily_summary_for_the_sales_team"
    )
    drawer.get_by_role("button", name="Save").click()
    expect(drawer.locator("[data-outcome=ok]")).to_have_text(
        "archive now depends on daily_summary_for_the_sales_team."
    )
    expect(drawer.locator("[data-list=depends-on]")).to_contain_text(
        "daily_summary_for_the_sales_team"
    )
    expect(graph.locator("path.edge")).to_have_count(6)
    expect(node(page, ids["archive"])).to_have_attribute("data-level", "4")
    expect(node(page, ids["archive"])).to_have_class("asset s-never selected")
    assert page.evaluate("window.stillTheSamePage") is True  # drawn again, not reloaded
    stored = graphs.list_dependencies(db, model["id"]) or []
    assert ("daily_summary_for_the_sales_team", "archive") in {
        (d["upstream"], d["downstream"]) for d in stored
    }
    screenshot(page, "model-drawer")

    # Refused: raw_prices depending on archive would close a cycle; the 400's message shows.
    node(page, ids["raw_prices"]).click()
    expect(drawer.locator("h2")).to_have_text("raw_prices")
    drawer.get_by_text("Add dependency").click()
    drawer.get_by_label("raw_prices depends on").select_option(label="archive")
    drawer.get_by_role("button", name="Save").click()
    expect(drawer.get_by_role("alert")).to_have_text(
        "refused: it would close a cycle: raw_prices would depend on archive, which depends "
        "on daily_summary_for_the_sales_team, which depends on cfs_margins, which depends on "
        "price_lists, which depends on raw_prices"
    )
    expect(graph.locator("path.edge")).to_have_count(6)
    assert len(graphs.list_dependencies(db, model["id"]) or []) == 6  # nothing stored
    screenshot(page, "model-drawer-cycle")

    # Delete, after a confirmation: dismissed first (nothing happens), then accepted.
    node(page, ids["price_lists"]).click()
    expect(drawer.locator("h2")).to_have_text("price_lists")
    delete = drawer.get_by_role("button", name="Delete: price_lists depends on fx_rates")
    questions: list[str] = []

    def answer(accept: bool) -> None:
        def reply(dialog: Any) -> None:
            questions.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", reply)

    answer(False)
    delete.click()
    expect(drawer.locator("[data-list=depends-on] li")).to_have_count(2)
    assert questions == ["Delete this dependency? price_lists depends on fx_rates"]
    answer(True)
    delete.click()
    expect(drawer.locator("[data-outcome=ok]")).to_have_text(
        "price_lists no longer depends on fx_rates."
    )
    expect(drawer.locator("[data-list=depends-on] li")).to_have_count(1)
    expect(graph.locator("path.edge")).to_have_count(5)
    expect(graph.locator(f'path.edge[data-up="{ids["fx_rates"]}"]')).to_have_count(1)
    assert len(graphs.list_dependencies(db, model["id"]) or []) == 5

    page.keyboard.press("Escape")
    expect(drawer).to_have_count(0)
    expect(page).to_have_url(f"{live.url}/admin/models/{model['id']}")


def test_a_reader_sees_the_drawer_but_cannot_change_it(
    live: LiveServer, db: Database, page: Page, model: dict[str, Any]
) -> None:
    ids = model["assets"]
    log_in(page, live.url, tokens.create(db, "reader", "operator on call")[1])
    page.goto(f"{live.url}/admin/models/{model['id']}/assets/{ids['price_lists']}")
    drawer = page.locator("#drawer")  # the drawer opens from its own address, no click
    expect(drawer.locator("h2")).to_have_text("price_lists")
    expect(page.locator("#graph")).to_have_attribute("data-drawn", "6")
    expect(node(page, ids["price_lists"])).to_have_class("asset s-never selected")
    delete = drawer.get_by_role("button", name="Delete: price_lists depends on raw_prices")
    expect(delete).to_be_disabled()
    expect(drawer).to_contain_text("Read-only: your role is reader.")
    drawer.get_by_text("Add dependency").click()
    expect(drawer.get_by_role("button", name="Save")).to_be_disabled()
    # The server refuses it too, even with the page's own CSRF token, in the drawer.
    page.evaluate(
        """() => {
            const form = document.querySelector('form[action$="/dependencies"]');
            form.querySelector("button").disabled = false;
            form.requestSubmit();
        }"""
    )
    expect(drawer.get_by_role("alert")).to_contain_text("needs the admin role")
    assert len(graphs.list_dependencies(db, model["id"]) or []) == 5
    screenshot(page, "model-reader")


def test_run_from_the_model_page_turns_the_picture_green(
    live: LiveServer, db: Database, page: Page, pool: object
) -> None:
    """Run on the model page: every asset refreshes in order and the picture, updating
    itself, shows each one FINISHED; the run is listed with its chain."""
    model_id = graphs.create_model(db, "nightly", None)
    ids = {
        name: graph_changes.create_asset(
            db,
            model_id,
            {
                "name": name,
                "job": {"targetObject": f"{name}.SLEEP", "parameters": {"seconds": 0.3}},
            },
        )
        for name in ("load", "refresh", "report")
    }
    graph_changes.add_dependency(db, model_id, ids["load"], ids["refresh"])
    graph_changes.add_dependency(db, model_id, ids["refresh"], ids["report"])
    log_in(page, live.url, ADMIN_TOKEN)
    page.goto(f"{live.url}/admin/models/{model_id}")
    expect(page.locator("#graph")).to_have_attribute("data-drawn", "3")
    for asset_id in ids.values():
        expect(node(page, asset_id)).to_have_attribute("data-state", "never")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".flash-ok")).to_contain_text("Started run")
    for asset_id in ids.values():
        expect(node(page, asset_id)).to_have_attribute("data-state", "FINISHED", timeout=20_000)
    expect(page.locator("#runs tbody tr").first).to_contain_text("SUCCEEDED")
    screenshot(page, "model-run-finished")
