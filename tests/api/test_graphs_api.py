"""The models API over real HTTP, on SQLite and PostgreSQL: models, assets, dependencies
with cycle detection, the order, and the graph as a file.

Every refusal must be a 4xx with the one error shape, and must store nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.runtime import Runtime
from app.server import load_job_modules
from app.store import tokens
from tests.helpers import AUTH, LiveServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"
HUGE_ID = 99999999999999999999
NOOP = {"targetObject": "NOOP"}


class Api:
    """A keep-alive session bound to one live server's /api/v1, sending the admin token."""

    def __init__(self, url: str, headers: dict[str, str] = AUTH):
        self.base = f"{url}/api/v1"
        self.session = requests.Session()
        self.session.headers.update(headers)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=30, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def model(self, name: str = "sales", **fields: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.ok("POST", "/models", 201, json={"name": name, **fields})
        return found

    def asset(self, model_id: int, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "job": NOOP, **fields}
        found: dict[str, Any] = self.ok("POST", f"/models/{model_id}/assets", 201, json=body)
        return found

    def depend(self, model_id: int, downstream: int, upstream: int) -> requests.Response:
        body = {"upstreamId": upstream, "downstreamId": downstream}
        return self.call("POST", f"/models/{model_id}/dependencies", json=body)

    def dependencies(self, model_id: int) -> list[tuple[str, str]]:
        items = self.ok("GET", f"/models/{model_id}/dependencies")["items"]
        return [(d["upstream"], d["downstream"]) for d in items]


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.session.close()


def error_of(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The error body, after checking the status, the one error shape and the code."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def abc(api: Api) -> tuple[int, dict[str, int]]:
    """A model with assets A, B, C and no dependencies."""
    model = api.model("abc")
    return model["id"], {n: api.asset(model["id"], n)["id"] for n in "ABC"}


# -- models ------------------------------------------------------------------------------


def test_model_crud(api: Api) -> None:
    created = api.model("finance", description="monthly figures")
    assert created == {
        "id": created["id"],
        "name": "finance",
        "description": "monthly figures",
        "assetCount": 0,
    }
    api.asset(created["id"], "load_sales")
    model_id = created["id"]
    assert api.ok("GET", f"/models/{model_id}")["assetCount"] == 1
    assert [m["name"] for m in api.ok("GET", "/models")["items"]] == ["finance"]
    patched = api.ok(
        "PATCH", f"/models/{model_id}", json={"name": "finance-2", "description": None}
    )
    assert (patched["name"], patched["description"]) == ("finance-2", None)
    api.model("other")
    error_of(api.call("PATCH", f"/models/{model_id}", json={"name": "other"}), 409, "name_taken")
    error_of(api.call("POST", "/models", json={"name": "other"}), 409, "name_taken")
    assert api.call("DELETE", f"/models/{model_id}").status_code == 204
    error_of(api.call("GET", f"/models/{model_id}"), 404, "not_found")
    error_of(api.call("DELETE", f"/models/{model_id}"), 404, "not_found")
    assert [m["name"] for m in api.ok("GET", "/models")["items"]] == ["other"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "extra": 1}, "extra"),
        ({"name": "ok", "description": 5}, "description"),
    ],
)
def test_invalid_models_are_refused(api: Api, body: dict[str, Any], path: str) -> None:
    error = error_of(api.call("POST", "/models", json=body), 400, "invalid_model")
    assert path in error["details"]
    assert api.ok("GET", "/models")["items"] == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_and_huge_model_ids_are_404(api: Api, method: str) -> None:
    for model_id in (12345, HUGE_ID):
        response = api.call(method, f"/models/{model_id}", json={"name": "x"})
        error_of(response, 404, "not_found")
    for path in ("assets", "dependencies", "order", "graph"):
        error_of(api.call("GET", f"/models/{HUGE_ID}/{path}"), 404, "not_found")


# -- assets ------------------------------------------------------------------------------


def test_asset_crud(api: Api) -> None:
    model_id = api.model()["id"]
    job = {"targetObject": "sales.SLEEP", "parameters": {"seconds": 0.1}, "maxAttempts": 3}
    created = api.asset(model_id, "load_sales", job=job, cron="0 2 * * *", timezone="Europe/Paris")
    assert created == {
        "id": created["id"],
        "modelId": model_id,
        "name": "load_sales",
        "description": None,
        "job": job,
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "dependsOn": [],
        "requiredBy": [],
        "lastRefresh": None,
        # Declarative automation (tests/api/test_automation_api.py): the defaults.
        "kind": "job",
        "automation": "off",
        "freshness": None,
        "codeVersion": None,
        "observe": None,
        "status": "MISSING",
        "causes": [],
        "dataVersion": None,
        "currentDataTime": None,
        "late": False,
        "lateBy": 0.0,
        "nextDeadline": None,
        "held": False,
        "heldError": None,
    }
    asset_id = created["id"]
    path = f"/models/{model_id}/assets/{asset_id}"
    assert api.ok("GET", path) == created
    patched = api.ok("PATCH", path, json={"cron": None, "description": "daily"})
    assert (patched["cron"], patched["timezone"], patched["description"]) == (
        None,
        "Europe/Paris",
        "daily",
    )
    api.asset(model_id, "other")
    error_of(api.call("PATCH", path, json={"name": "other"}), 409, "name_taken")
    error_of(
        api.call("POST", f"/models/{model_id}/assets", json={"name": "other", "job": NOOP}), 409
    )
    # The same name in another model is fine.
    api.asset(api.model("second")["id"], "other")
    assert [a["name"] for a in api.ok("GET", f"/models/{model_id}/assets")["items"]] == [
        "load_sales",
        "other",
    ]
    assert api.call("DELETE", path).status_code == 204
    error_of(api.call("GET", path), 404, "not_found")
    error_of(api.call("DELETE", path), 404, "not_found")
    error_of(api.call("GET", f"/models/{model_id}/assets/{HUGE_ID}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"job": NOOP}, "name"),
        ({"name": "bad/name", "job": NOOP}, "name"),
        ({"name": "a"}, "job"),
        ({"name": "a", "job": {"targetObject": "NO_SUCH_TYPE"}}, "job.targetObject"),
        ({"name": "a", "job": {"targetObject": "NOOP", "maxAttempts": 0}}, "job.maxAttempts"),
        ({"name": "a", "job": {"targetObject": "NOOP", "bogus": 1}}, "job.bogus"),
        ({"name": "a", "job": "NOOP"}, "job"),
        ({"name": "a", "job": {**NOOP, "nextJobs": [NOOP]}}, "job.nextJobs"),
        ({"name": "a", "job": {"targetObject": "k.JOIN"}}, "job.targetObject"),
        ({"name": "a", "job": NOOP, "cron": "61 * * * *"}, "cron"),
        ({"name": "a", "job": NOOP, "cron": "0 0 31 2 *"}, "cron"),
        ({"name": "a", "job": NOOP, "cron": "* * * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "a", "job": NOOP, "timezone": "Mars/Base"}, "timezone"),
        ({"name": "a", "job": NOOP, "lastRefresh": None}, "lastRefresh"),
    ],
)
def test_invalid_assets_are_refused(api: Api, body: dict[str, Any], path: str) -> None:
    model_id = api.model()["id"]
    error = error_of(
        api.call("POST", f"/models/{model_id}/assets", json=body), 400, "invalid_asset"
    )
    assert path in error["details"], error
    assert api.ok("GET", f"/models/{model_id}/assets")["items"] == []


def test_every_bad_field_of_an_asset_is_named_at_once(api: Api) -> None:
    model_id = api.model()["id"]
    body = {"name": "a", "job": {"targetObject": "NOPE"}, "cron": "bad", "timezone": "Nowhere"}
    error = error_of(api.call("POST", f"/models/{model_id}/assets", json=body), 400)
    assert set(error["details"]) == {"job.targetObject", "cron", "timezone"}
    asset_id = api.asset(model_id, "b")["id"]
    response = api.call("PATCH", f"/models/{model_id}/assets/{asset_id}", json={"timezone": "X/Y"})
    assert set(error_of(response, 400, "invalid_asset")["details"]) == {"timezone"}


def test_assets_of_an_unknown_model_are_404(api: Api) -> None:
    error_of(api.call("POST", "/models/999/assets", json={"name": "a", "job": NOOP}), 404)
    error_of(api.call("GET", "/models/999/assets"), 404, "not_found")


# -- dependencies ------------------------------------------------------------------------


def test_dependencies_show_on_both_ends_and_transitively(api: Api) -> None:
    model_id, ids = abc(api)
    response = api.depend(model_id, downstream=ids["B"], upstream=ids["A"])
    assert response.status_code == 201, response.text
    assert response.json() == {
        "id": response.json()["id"],
        "modelId": model_id,
        "upstreamId": ids["A"],
        "downstreamId": ids["B"],
        "upstream": "A",
        "downstream": "B",
    }
    body = {"upstream_id": ids["B"], "downstream_id": ids["C"]}  # snake_case is accepted too
    assert api.call("POST", f"/models/{model_id}/dependencies", json=body).status_code == 201
    assert api.dependencies(model_id) == [("A", "B"), ("B", "C")]

    def refs(*names: str) -> list[dict[str, Any]]:
        return [{"id": ids[n], "name": n} for n in names]

    b = api.ok("GET", f"/models/{model_id}/assets/{ids['B']}")
    assert (b["dependsOn"], b["requiredBy"]) == (refs("A"), refs("C"))
    c = api.ok("GET", f"/models/{model_id}/assets/{ids['C']}?transitive=true")
    assert (c["dependsOn"], c["requiredBy"]) == (refs("A", "B"), [])
    listed = api.ok("GET", f"/models/{model_id}/assets", params={"transitive": "true"})["items"]
    assert [a["requiredBy"] for a in listed] == [refs("B", "C"), refs("C"), []]
    error_of(api.call("GET", f"/models/{model_id}/assets?transitive=yes"), 400, "invalid_query")
    error_of(api.call("GET", f"/models/{model_id}/assets?depth=2"), 400, "invalid_query")


def test_a_cycle_of_three_is_refused_naming_it(api: Api) -> None:
    model_id, ids = abc(api)
    assert api.depend(model_id, downstream=ids["A"], upstream=ids["B"]).status_code == 201
    assert api.depend(model_id, downstream=ids["B"], upstream=ids["C"]).status_code == 201
    error = error_of(
        api.depend(model_id, downstream=ids["C"], upstream=ids["A"]), 400, "dependency_cycle"
    )
    assert error["details"]["cycle"] == ["C", "A", "B", "C"]
    assert "C would depend on A, which depends on B, which depends on C" in error["message"]
    assert api.dependencies(model_id) == [("B", "A"), ("C", "B")]


def test_a_self_dependency_is_refused(api: Api) -> None:
    model_id, ids = abc(api)
    error = error_of(api.depend(model_id, ids["A"], ids["A"]), 400, "dependency_cycle")
    assert error["details"]["cycle"] == ["A", "A"]
    assert "A would depend on itself" in error["message"]
    assert api.dependencies(model_id) == []


def test_a_dependency_across_models_is_refused(api: Api) -> None:
    model_id, ids = abc(api)
    other = api.model("other")["id"]
    stranger = api.asset(other, "X")["id"]
    error = error_of(api.depend(model_id, ids["A"], stranger), 400, "cross_model_dependency")
    assert error["details"] == {"assets": ["X"]}
    error_of(api.depend(other, stranger, ids["A"]), 400, "cross_model_dependency")
    assert api.dependencies(model_id) == [] and api.dependencies(other) == []


def test_unknown_assets_and_models_are_404_and_the_same_dependency_twice_409(api: Api) -> None:
    model_id, ids = abc(api)
    for missing in (424242, HUGE_ID):
        error = error_of(api.depend(model_id, ids["A"], missing), 404, "not_found")
        assert str(missing) in error["message"]
        error_of(api.depend(model_id, missing, ids["A"]), 404, "not_found")
    error_of(api.depend(777, ids["B"], ids["A"]), 404, "not_found")
    first = api.depend(model_id, ids["B"], ids["A"]).json()
    error = error_of(api.depend(model_id, ids["B"], ids["A"]), 409, "duplicate_dependency")
    assert error["details"] == {"dependencyId": first["id"]}
    assert api.dependencies(model_id) == [("A", "B")]


def test_delete_a_dependency_then_add_it_again(api: Api) -> None:
    model_id, ids = abc(api)
    first = api.depend(model_id, ids["B"], ids["A"]).json()
    path = f"/models/{model_id}/dependencies/{first['id']}"
    assert api.call("DELETE", path).status_code == 204
    error_of(api.call("DELETE", path), 404, "not_found")
    assert api.dependencies(model_id) == []
    again = api.depend(model_id, ids["B"], ids["A"])
    assert again.status_code == 201 and again.json()["id"] > first["id"]
    # A -> B removed lets B -> A in: no cycle any more once A -> B is gone.
    api.call("DELETE", f"/models/{model_id}/dependencies/{again.json()['id']}")
    assert api.depend(model_id, ids["A"], ids["B"]).status_code == 201
    # Another model's dependency id is not found through this model.
    other = api.model("other")["id"]
    error_of(api.call("DELETE", f"/models/{other}/dependencies/{first['id']}"), 404)


def test_deleting_an_asset_removes_its_dependencies(api: Api) -> None:
    model_id, ids = abc(api)
    api.depend(model_id, ids["B"], ids["A"])
    api.depend(model_id, ids["C"], ids["B"])
    assert api.call("DELETE", f"/models/{model_id}/assets/{ids['B']}").status_code == 204
    assert api.dependencies(model_id) == []
    assert api.ok("GET", f"/models/{model_id}/assets/{ids['A']}")["requiredBy"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"upstreamId": 1},
        {"upstreamId": "1", "downstreamId": 2},
        {"upstreamId": True, "downstreamId": 2},
        {"upstreamId": 0, "downstreamId": 2},
        {"upstreamId": 1, "downstreamId": 2, "upstream_id": 1},
        {"upstreamId": 1, "downstreamId": 2, "note": "x"},
        [1, 2],
    ],
)
def test_invalid_dependency_bodies_are_400(api: Api, body: Any) -> None:
    model_id, _ = abc(api)
    response = api.call("POST", f"/models/{model_id}/dependencies", json=body)
    error_of(response, 400, "invalid_dependency")
    response = api.call("POST", f"/models/{model_id}/dependencies", data=b"{not json")
    error_of(response, 400, "invalid_json")


def test_order_and_levels(api: Api) -> None:
    model_id = api.model()["id"]
    ids = {n: api.asset(model_id, n)["id"] for n in ("profit_report", "load_sales", "load_x")}
    api.depend(model_id, ids["profit_report"], ids["load_sales"])
    api.depend(model_id, ids["profit_report"], ids["load_x"])
    assert api.ok("GET", f"/models/{model_id}/order") == {
        "order": ["load_sales", "load_x", "profit_report"],
        "levels": [["load_sales", "load_x"], ["profit_report"]],
    }


def test_readers_read_and_only_admins_change(api: Api, live: LiveServer, runtime: Runtime) -> None:
    model_id = api.model()["id"]
    _, secret = tokens.create(runtime.db, "reader", "viewer")
    reader = Api(live.url, {"Authorization": f"Bearer {secret}"})
    assert reader.ok("GET", f"/models/{model_id}/order") == {"order": [], "levels": []}
    error = error_of(reader.call("POST", "/models", json={"name": "x"}), 403)
    assert error["details"]["requiredRole"] == "admin"
    error_of(reader.call("DELETE", f"/models/{model_id}"), 403)
    reader.session.close()


def test_a_model_or_asset_refreshing_cannot_be_deleted(api: Api) -> None:
    model_id, ids = abc(api)
    api.depend(model_id, ids["B"], ids["A"])
    # A run of A alone (no workers: its jobs wait).
    body = {"assets": ["A"], "downstream": False}
    run = api.ok("POST", f"/models/{model_id}/runs", 201, json=body)
    job_id = run["assets"][0]["jobId"]
    shown = api.ok("GET", f"/models/{model_id}/assets/{ids['A']}")["lastRefresh"]
    assert shown == {
        "jobId": job_id,
        "status": "WAITING_FOR_PARENT",
        "startedAt": None,
        "finishedAt": None,
    }
    error = error_of(api.call("DELETE", f"/models/{model_id}"), 409, "run_active")
    assert error["details"] == {"runs": [run["id"]]}
    error_of(api.call("DELETE", f"/models/{model_id}/assets/{ids['A']}"), 409, "asset_refreshing")
    graph = api.ok("GET", f"/models/{model_id}/graph")
    graph["assets"] = [a for a in graph["assets"] if a["name"] != "A"]
    graph["dependencies"] = []
    error_of(api.call("PUT", f"/models/{model_id}/graph", json=graph), 409, "asset_refreshing")
    assert len(api.ok("GET", f"/models/{model_id}/assets")["items"]) == 3
    # Another asset is not refreshing: it goes.
    assert api.call("DELETE", f"/models/{model_id}/assets/{ids['C']}").status_code == 204
    assert api.ok("POST", f"/models/{model_id}/runs/{run['id']}/cancel")["state"] == "CANCELLED"
    refreshed = api.ok("GET", f"/models/{model_id}/assets/{ids['A']}")["lastRefresh"]
    assert refreshed["status"] == "CANCELLED"
    assert api.call("DELETE", f"/models/{model_id}").status_code == 204


# -- the graph as a file -----------------------------------------------------------------


def test_the_example_files_round_trip(api: Api) -> None:
    load_job_modules(("examples.pricing_jobs",))  # LPG and CFS, as `make run` loads them
    for path in sorted(EXAMPLES.glob("*.json")):
        document = json.loads(path.read_text())
        graph = {"assets": document["assets"], "dependencies": document["dependencies"]}
        model_id = api.model(document["name"])["id"]
        stored = api.ok("PUT", f"/models/{model_id}/graph", json=graph)
        again = api.ok("GET", f"/models/{model_id}/graph")
        assert stored == again
        assert again["dependencies"] == graph["dependencies"]
        by_name = {a["name"]: a for a in again["assets"]}
        for asset in graph["assets"]:
            assert by_name[asset["name"]]["job"] == asset.get("job")  # a source has none
        # Applying what GET gave changes nothing, ids included.
        before = api.ok("GET", f"/models/{model_id}/dependencies")
        assert api.ok("PUT", f"/models/{model_id}/graph", json=again) == again
        assert api.ok("GET", f"/models/{model_id}/dependencies") == before


def test_put_graph_keeps_ids_of_kept_assets_and_drops_the_rest(api: Api) -> None:
    model_id, ids = abc(api)
    dep = api.depend(model_id, ids["B"], ids["A"]).json()
    graph = {
        "assets": [{"name": "A", "job": NOOP, "cron": "*/5 * * * *"}, {"name": "D", "job": NOOP}],
        "dependencies": [{"upstream": "A", "downstream": "D"}],
    }
    api.ok("PUT", f"/models/{model_id}/graph", json=graph)
    assets = {a["name"]: a for a in api.ok("GET", f"/models/{model_id}/assets")["items"]}
    assert set(assets) == {"A", "D"}
    assert assets["A"]["id"] == ids["A"] and assets["A"]["cron"] == "*/5 * * * *"
    assert api.dependencies(model_id) == [("A", "D")]
    assert api.ok("GET", f"/models/{model_id}/dependencies")["items"][0]["id"] > dep["id"]
    assert api.ok("GET", f"/models/{model_id}")["assetCount"] == 2


def test_put_graph_reports_every_problem_and_stores_nothing(api: Api) -> None:
    model_id, _ = abc(api)
    before = api.ok("GET", f"/models/{model_id}/graph")
    graph = {
        "assets": [
            {"name": "A", "job": NOOP},
            {"name": "A", "job": NOOP},
            {"name": "B", "job": {"targetObject": "NOPE"}},
            {"name": "C", "job": NOOP, "cron": "nope"},
            "not an object",
        ],
        "dependencies": [
            {"upstream": "A", "downstream": "Z"},
            {"upstream": "A", "downstream": "B"},
            {"upstream": "A", "downstream": "B"},
            {"upstream": "B", "downstream": "A"},
            {"upstream": "A"},
        ],
    }
    error = error_of(api.call("PUT", f"/models/{model_id}/graph", json=graph), 400, "invalid_graph")
    assert set(error["details"]) == {
        "assets[1].name",
        "assets[2].job.targetObject",
        "assets[3].cron",
        "assets[4]",
        "dependencies[0].downstream",
        "dependencies[2]",
        "dependencies[3]",
        "dependencies[4].downstream",
        "cycle",
    }
    assert error["details"]["cycle"] == ["A", "B", "A"]
    assert api.ok("GET", f"/models/{model_id}/graph") == before


def test_put_graph_with_only_a_cycle_is_a_dependency_cycle(api: Api) -> None:
    model_id = api.model()["id"]
    graph = {
        "assets": [{"name": n, "job": NOOP} for n in "ABC"],
        "dependencies": [
            {"upstream": "B", "downstream": "A"},
            {"upstream": "C", "downstream": "B"},
            {"upstream": "A", "downstream": "C"},
        ],
    }
    error = error_of(
        api.call("PUT", f"/models/{model_id}/graph", json=graph), 400, "dependency_cycle"
    )
    assert error["details"]["cycle"] == ["C", "A", "B", "C"]
    assert error["details"]["dependencies[2]"] == [
        "C would depend on A, which depends on B, which depends on C"
    ]
    assert api.ok("GET", f"/models/{model_id}/graph") == {"assets": [], "dependencies": []}
    bad = [{"assets": "x"}, {"dependencies": []}, {"assets": [], "name": "x"}, []]
    for body in bad:
        error_of(api.call("PUT", f"/models/{model_id}/graph", json=body), 400, "invalid_graph")
    error_of(api.call("PUT", "/models/4242/graph", json={"assets": []}), 404, "not_found")


def test_the_openapi_document_describes_the_models_api(api: Api, live: LiveServer) -> None:
    document = requests.get(f"{live.url}/api/v1/openapi.json", timeout=30).json()
    paths = document["paths"]
    for path, methods in {
        "/api/v1/models": {"get", "post"},
        "/api/v1/models/{model_id}": {"get", "patch", "delete"},
        "/api/v1/models/{model_id}/assets": {"get", "post"},
        "/api/v1/models/{model_id}/assets/{asset_id}": {"get", "patch", "delete"},
        "/api/v1/models/{model_id}/dependencies": {"get", "post"},
        "/api/v1/models/{model_id}/dependencies/{dependency_id}": {"delete"},
        "/api/v1/models/{model_id}/order": {"get"},
        "/api/v1/models/{model_id}/graph": {"get", "put"},
    }.items():
        assert methods <= set(paths[path]), path
    assert paths["/api/v1/models"]["post"]["x-required-role"] == "admin"
    assert {"Model", "Asset", "Dependency", "Order", "Graph"} <= set(
        document["components"]["schemas"]
    )
