"""The runs API over real HTTP, on SQLite and PostgreSQL: every refusal is a 4xx with the
one error shape, and stores nothing; the answers' shapes; the job view naming its run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.runtime import Runtime
from app.store import tokens
from tests.api.test_graphs_api import Api, error_of
from tests.helpers import LiveServer


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.session.close()


def diamond(api: Api) -> int:
    model_id = int(api.model("diamond")["id"])
    ids = {name: api.asset(model_id, name)["id"] for name in "abcd"}
    for up, down in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        assert api.depend(model_id, ids[down], ids[up]).status_code == 201
    return model_id


def test_a_run_lists_every_asset_it_refreshes_from_the_start(api: Api) -> None:
    model_id = diamond(api)
    response = api.call("POST", f"/models/{model_id}/runs", json={"assets": ["b"]})
    assert response.status_code == 201, response.text
    run = response.json()
    assert response.headers["Location"] == f"/api/v1/models/{model_id}/runs/{run['id']}"
    assert run["modelId"] == model_id and run["batch"] == f"run-{run['id']}"
    assert run["state"] == "RUNNING"
    assert [(a["name"], a["status"]) for a in run["assets"]] == [
        ("b", "WAITING_FOR_PARENT"),
        ("d", "WAITING_FOR_PARENT"),
    ]
    d = run["assets"][1]
    assert d["waitingFor"] == f"waiting for 'b' in batch run-{run['id']}"
    job = api.ok("GET", f"/jobs/{d['jobId']}")
    assert job["asset"] == {
        "modelId": model_id,
        "model": "diamond",
        "asset": "d",
        "runId": run["id"],
        "batch": f"run-{run['id']}",
        "reason": None,
    }
    assert api.ok("GET", f"/jobs/{run['rootJobId']}")["asset"] is None
    assert api.ok("GET", f"/models/{model_id}/runs/{run['id']}") == run
    listed = api.ok("GET", f"/models/{model_id}/runs?state=RUNNING&batch={run['batch']}")
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    assert api.ok("GET", f"/models/{model_id}/runs?state=SUCCEEDED")["items"] == []
    tasks = api.ok("GET", f"/models/{model_id}/batches/{run['batch']}")["tasks"]
    assert [(t["asset"], t["status"]) for t in tasks] == [("b", "NEW"), ("d", "NEW")]
    cancelled = api.ok("POST", f"/models/{model_id}/runs/{run['id']}/cancel")
    assert cancelled["state"] == "CANCELLED"
    tasks = api.ok("GET", f"/models/{model_id}/batches/{run['batch']}")["tasks"]
    assert {t["status"] for t in tasks} == {"ERROR"}


def test_every_refusal_is_a_4xx_that_stores_nothing(api: Api, runtime: Runtime) -> None:
    model_id = diamond(api)
    runs = f"/models/{model_id}/runs"
    cases = [
        ({"assets": ["nope", "a"]}, "invalid_run", {"assets[0]"}),
        ({"assets": []}, "invalid_run", {"assets"}),
        ({"assets": ["a"], "extra": 1}, "invalid_run", {"extra"}),
        ({"downstream": "no"}, "invalid_run", {"downstream"}),
        ({"batch": "run-3"}, "invalid_run", {"batch"}),
        ({"batch": ""}, "invalid_run", {"batch"}),
        ({"batch": "2024-03", "downstream": False}, "invalid_run", {"downstream"}),
    ]
    for body, code, paths in cases:
        error = error_of(api.call("POST", runs, json=body), 400, code)
        assert set(error["details"]) == paths, (body, error)
    error_of(api.call("POST", runs, data="{"), 400, "invalid_json")
    empty = api.model("empty")["id"]
    error_of(api.call("POST", f"/models/{empty}/runs", json={}), 400, "invalid_run")
    error_of(api.call("POST", "/models/999/runs", json={}), 404, "not_found")
    error_of(api.call("POST", f"/models/{2**70}/runs", json={}), 404, "not_found")
    assert api.ok("GET", runs)["items"] == []
    # 409: already in the batch, unless forced.
    api.ok("POST", runs, 201, json={"assets": ["a"], "batch": "2024-03"})
    error = error_of(
        api.call("POST", runs, json={"assets": ["a"], "batch": "2024-03"}), 409, "already_in_batch"
    )
    assert error["details"] == {"assets": ["a"], "batch": "2024-03"}
    assert len(api.ok("GET", runs)["items"]) == 1
    api.ok("POST", runs, 201, json={"assets": ["a"], "batch": "2024-03", "force": True})
    # Reads.
    error_of(api.call("GET", f"{runs}?state=DONE"), 400, "invalid_query")
    error_of(api.call("GET", f"{runs}?color=red"), 400, "invalid_query")
    error_of(api.call("GET", "/models/999/runs"), 404, "not_found")
    error_of(api.call("GET", f"{runs}/999"), 404, "not_found")
    error_of(api.call("GET", "/models/999/runs/1"), 404, "not_found")
    error_of(api.call("POST", f"{runs}/999/cancel"), 404, "not_found")
    error_of(api.call("GET", f"/models/{model_id}/batches/nope"), 404, "not_found")
    error_of(api.call("GET", "/models/999/batches/2024-03"), 404, "not_found")
    # A run that ended cannot be cancelled.
    first = api.ok("GET", runs)["items"][0]["id"]
    api.ok("POST", f"{runs}/{first}/cancel")
    error_of(api.call("POST", f"{runs}/{first}/cancel"), 409, "run_ended")
    # Roles: a reader may look, not start; a submitter may not run a SHELL asset.
    _, reader_secret = tokens.create(runtime.db, "reader", "viewer")
    reader = Api(api.base.removesuffix("/api/v1"), {"Authorization": f"Bearer {reader_secret}"})
    assert reader.ok("GET", runs)["items"]
    error = error_of(reader.call("POST", runs, json={}), 403)
    assert error["details"]["requiredRole"] == "submitter"
    error_of(reader.call("POST", f"{runs}/{first}/cancel"), 403)
    reader.session.close()
    _, secret = tokens.create(runtime.db, "submitter", "etl")
    submitter = Api(api.base.removesuffix("/api/v1"), {"Authorization": f"Bearer {secret}"})
    shell = api.model("shell")["id"]
    api.asset(shell, "x", job={"targetObject": "SHELL", "parameters": {"command": ["true"]}})
    error_of(submitter.call("POST", f"/models/{shell}/runs", json={}), 403, "insufficient_role")
    assert submitter.ok("GET", f"/models/{shell}/runs")["items"] == []
    assert submitter.ok("POST", runs, 201, json={"assets": ["d"]})["state"] == "RUNNING"
    submitter.session.close()


def test_openapi_documents_the_run_endpoints(api: Api) -> None:
    paths = api.ok("GET", "/openapi.json")["paths"]
    assert set(paths["/api/v1/models/{model_id}/runs"]) == {"get", "post"}
    assert set(paths["/api/v1/models/{model_id}/runs/{run_id}"]) == {"get"}
    assert set(paths["/api/v1/models/{model_id}/runs/{run_id}/cancel"]) == {"post"}
    assert set(paths["/api/v1/models/{model_id}/batches/{batch}"]) == {"get"}
