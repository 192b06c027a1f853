"""The models pages' server side through Flask's test client: the pages and the picture's
data, the drawer's changes (as graph.js fetches them and as plain forms), the API's messages
for a refused dependency, roles, CSRF, and 4xx (never 500) on bad input.

The real browser is in test_admin_graphs_browser.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.admin import models_views
from app.runtime import Runtime
from app.store import graph_changes, graphs, tokens
from app.store.database import Database
from app.web import create_app
from tests.admin.test_admin import csrf, log_in

DRAWER = {"X-Console-Fetch": "drawer"}
GRAPH_DATA = re.compile(r'<script type="application/json" id="graph-data">(.*?)</script>', re.S)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The console's HTTP side is database-agnostic; the store's rules run on both elsewhere."""
    return sqlite_url


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def abc(db: Database) -> dict[str, int]:
    """Model "abc": A depends on B, B depends on C (so C is level 0 and A level 2)."""
    model_id = graphs.create_model(db, "abc", None)
    ids = {"model": model_id}
    for name in "ABC":
        ids[name] = graph_changes.create_asset(
            db, model_id, {"name": name, "job": {"targetObject": f"{name}.NOOP"}}
        )
    graph_changes.add_dependency(db, model_id, ids["B"], ids["A"])
    graph_changes.add_dependency(db, model_id, ids["C"], ids["B"])
    return ids


def asset_path(ids: dict[str, int], name: str) -> str:
    return f"/admin/models/{ids['model']}/assets/{ids[name]}"


def add(client: FlaskClient, ids: dict[str, int], down: str, up: Any, fetch: bool = True) -> Any:
    return client.post(
        f"{asset_path(ids, down)}/dependencies",
        data={"csrf_token": csrf(client), "upstream_id": str(up)},
        headers=DRAWER if fetch else {},
    )


def edges(db: Database, model_id: int) -> set[tuple[str, str]]:
    return {(d["upstream"], d["downstream"]) for d in graphs.list_dependencies(db, model_id) or []}


def test_the_models_page_lists_models_with_their_asset_counts(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    graphs.create_model(db, "empty", "nothing in it yet")
    log_in(client)
    page = client.get("/admin/models")
    assert page.status_code == 200
    assert re.search(
        r'<a href="/admin/models/\d+">abc</a>.*?<td class="num">3</td>', page.text, re.S
    )
    assert "nothing in it yet" in page.text
    assert 'href="/admin/models" aria-current="page">Models</a>' in page.text


def test_the_model_page_carries_the_picture_at_the_domains_levels(
    client: FlaskClient, abc: dict[str, int]
) -> None:
    log_in(client)
    page = client.get(f"/admin/models/{abc['model']}")
    assert page.status_code == 200
    found = GRAPH_DATA.search(page.text)
    assert found is not None
    picture = json.loads(found.group(1))
    levels = {a["name"]: (a["level"], a["state"], a["at"]) for a in picture["assets"]}
    assert levels == {"A": (2, "never", None), "B": (1, "never", None), "C": (0, "never", None)}
    ups = {(d["up"], d["down"]) for d in picture["dependencies"]}
    assert ups == {(abc["B"], abc["A"]), (abc["C"], abc["B"])}
    assert "vendor/dagre.min.js" in page.text and "graph.js" in page.text
    assert re.search(r"<button[^>]*>Run</button>", page.text, re.S)
    assert not re.search(r"<button[^>]*disabled[^>]*>Run</button>", page.text, re.S)
    assert "Not run yet." in page.text
    assert 'id="drawer"' not in page.text


def test_too_many_assets_for_the_picture_leave_the_table(
    client: FlaskClient, abc: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models_views, "MAX_DRAWN", 2)
    log_in(client)
    page = client.get(f"/admin/models/{abc['model']}")
    assert "3 assets are more than the picture draws (2)" in page.text
    assert GRAPH_DATA.search(page.text) is None
    assert page.text.count('data-asset="') == 3  # the table still lists them


def test_an_asset_address_opens_its_drawer_and_graph_js_gets_the_drawer_alone(
    client: FlaskClient, abc: dict[str, int]
) -> None:
    log_in(client)
    page = client.get(asset_path(abc, "B"))
    assert page.status_code == 200 and 'id="drawer"' in page.text and "<html" in page.text
    drawer = client.get(asset_path(abc, "B"), headers=DRAWER)
    assert drawer.status_code == 200 and "<html" not in drawer.text
    depends_on, required_by = drawer.text.split('data-list="required-by"')
    assert ">C</a>" in depends_on and ">A</a>" in required_by
    assert 'aria-label="Delete: B depends on C"' in depends_on
    assert 'aria-label="Delete: A depends on B"' in required_by
    # It could depend on A (which would be refused) but not on C again nor on itself.
    options = re.findall(r'<option value="(\d+)">(\w+)</option>', drawer.text)
    assert options == [(str(abc["A"]), "A")]
    # The live part alone, for console.js's refresh, at the same address.
    live = client.get(asset_path(abc, "B"), headers={"X-Console-Fetch": "fragment"})
    assert 'id="graph-data"' in live.text and 'id="drawer"' not in live.text


def test_a_cycle_is_refused_with_the_apis_message_in_the_drawer(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    log_in(client)
    answer = add(client, abc, "C", abc["A"])
    assert answer.status_code == 400
    assert (
        "refused: it would close a cycle: C would depend on A, which depends on B, "
        "which depends on C</p>"
    ) in answer.text
    assert 'id="drawer"' in answer.text and "<html" not in answer.text
    # Without JavaScript: the whole page, with the message in the drawer, nothing stored.
    plain = add(client, abc, "C", abc["C"], fetch=False)
    assert plain.status_code == 400 and "<html" in plain.text
    assert "refused: it would close a cycle: C would depend on itself" in plain.text
    assert edges(db, abc["model"]) == {("B", "A"), ("C", "B")}


def test_adding_a_dependency_from_the_drawer_and_as_a_plain_form(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    log_in(client)
    answer = add(client, abc, "A", abc["C"])
    assert answer.status_code == 201
    assert 'data-outcome="ok">A now depends on C.</p>' in answer.text
    assert edges(db, abc["model"]) == {("B", "A"), ("C", "B"), ("C", "A")}
    again = add(client, abc, "A", abc["C"])
    assert again.status_code == 409
    assert f"asset {abc['A']} already depends on asset {abc['C']}" in again.text

    added = [d for d in graphs.list_dependencies(db, abc["model"]) or [] if d["downstream"] == "A"]
    graph_changes.delete_dependency(db, abc["model"], max(d["id"] for d in added))
    plain = add(client, abc, "A", abc["C"], fetch=False)
    assert plain.status_code == 303 and plain.location.endswith(asset_path(abc, "A"))
    shown = client.get(plain.location)
    assert "A now depends on C." in shown.text and 'id="drawer"' in shown.text


def test_deleting_a_dependency(client: FlaskClient, db: Database, abc: dict[str, int]) -> None:
    log_in(client)
    (dependency,) = [
        d for d in graphs.list_dependencies(db, abc["model"]) or [] if d["upstream"] == "C"
    ]
    path = f"{asset_path(abc, 'B')}/dependencies/{dependency['id']}/delete"
    form = {"csrf_token": csrf(client)}
    # Only from the drawer of one of its ends.
    elsewhere = client.post(
        f"{asset_path(abc, 'A')}/dependencies/{dependency['id']}/delete", data=form, headers=DRAWER
    )
    assert elsewhere.status_code == 404 and "deleted already?" in elsewhere.text
    answer = client.post(path, data=form, headers=DRAWER)
    assert answer.status_code == 200
    assert "B no longer depends on C." in answer.text
    assert edges(db, abc["model"]) == {("B", "A")}
    gone = client.post(path, data=form, headers=DRAWER)
    assert gone.status_code == 404
    assert f"no dependency {dependency['id']}: deleted already?" in gone.text


@pytest.mark.parametrize("upstream", ["", "x", "-1", "0", "1.5", "99999999999999999999"])
def test_a_bad_choice_is_a_400_not_a_500(
    client: FlaskClient, abc: dict[str, int], upstream: str
) -> None:
    log_in(client)
    answer = add(client, abc, "A", upstream)
    assert answer.status_code == 400
    assert "choose the asset it depends on" in answer.text


def test_unknown_models_assets_and_assets_of_another_model_are_404s(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    other = graphs.create_model(db, "other", None)
    foreign = graph_changes.create_asset(
        db, other, {"name": "X", "job": {"targetObject": "X.NOOP"}}
    )
    log_in(client)
    for path in (
        "/admin/models/999",
        "/admin/models/99999999999999999999",
        f"/admin/models/{abc['model']}/assets/999",
        f"/admin/models/{abc['model']}/assets/{foreign}",
        f"/admin/models/{other}/assets/{abc['A']}",
    ):
        assert client.get(path).status_code == 404, path
        assert client.get(path, headers=DRAWER).status_code == 404, path
    answer = add(client, abc, "A", foreign)
    assert answer.status_code == 400 and "not of model" in answer.text
    json_answer = client.get(f"/admin/models/{abc['model']}/assets/999", headers=DRAWER)
    assert json_answer.json == {
        "error": {
            "code": "not_found",
            "message": f"model {abc['model']} has no asset 999",
            "details": {},
        }
    }


def test_a_reader_may_look_but_not_change(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    log_in(client, tokens.create(db, "reader", "console reader")[1])
    drawer = client.get(asset_path(abc, "B"), headers=DRAWER)
    assert drawer.status_code == 200 and "Read-only: your role is reader." in drawer.text
    assert re.search(r"<button[^>]*disabled[^>]*>Save</button>", drawer.text, re.S)
    refused = add(client, abc, "A", abc["C"])
    assert refused.status_code == 403 and refused.json is not None
    assert "needs the admin role" in refused.json["error"]["message"]
    run = client.post(f"/admin/models/{abc['model']}/runs", data={"csrf_token": csrf(client)})
    assert run.status_code == 403
    assert edges(db, abc["model"]) == {("B", "A"), ("C", "B")}


def test_changes_need_the_csrf_token(
    client: FlaskClient, db: Database, abc: dict[str, int]
) -> None:
    log_in(client)
    for token in ("", "forged"):
        answer = client.post(
            f"{asset_path(abc, 'C')}/dependencies",
            data={"csrf_token": token, "upstream_id": str(abc["A"])},
            headers=DRAWER,
        )
        assert answer.status_code == 403
    assert edges(db, abc["model"]) == {("B", "A"), ("C", "B")}


def test_run_starts_a_run_and_lists_it(client: FlaskClient, abc: dict[str, int]) -> None:
    log_in(client)
    answer = client.post(f"/admin/models/{abc['model']}/runs", data={"csrf_token": csrf(client)})
    assert answer.status_code == 303
    page = client.get(answer.location).text
    found = re.search(r"Started run (\d+)\.", page)
    assert found, page
    assert f">run {found.group(1)}</a>" in page  # the runs section links the run's chain
    assert "RUNNING" in page
