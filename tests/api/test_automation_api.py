"""The automation API over real HTTP, on SQLite and PostgreSQL: what an asset declares and
shows, observations by an integration system, holds, refreshes, evaluations and ticks;
every refusal a 4xx in the one error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import tokens
from tests.api.test_graphs_api import Api, error_of
from tests.automation.support import Model
from tests.helpers import LiveServer


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.session.close()


def test_a_source_and_an_asset_declare_and_show_automation(
    api: Api, runtime: Runtime, pool: WorkerPool, live: LiveServer
) -> None:
    model_id = int(api.model("auto")["id"])
    base = f"/models/{model_id}/assets"
    src = api.ok("POST", base, 201, json={"name": "src", "kind": "source"})
    assert src["kind"] == "source" and src["job"] is None and src["status"] == "MISSING"
    clean = api.asset(
        model_id,
        "clean",
        automation="reconcile",
        codeVersion="1",
        freshness={"maximumLagMinutes": 60},
    )
    assert clean["automation"] == "reconcile" and clean["codeVersion"] == "1"
    assert clean["freshness"] == {"maximumLagMinutes": 60.0}
    api.depend(model_id, clean["id"], src["id"])
    _, token = tokens.create(runtime.db, "integration", "feeds")
    feed = Api(live.url, {"Authorization": f"Bearer {token}"})
    path = f"{base}/{src['id']}/observations"
    first = feed.ok("POST", path, 201, json={"dataVersion": "d1"})
    assert first["newData"] is True and first["assetId"] == src["id"]
    assert feed.ok("POST", path, 200, json={"dataVersion": "d1"})["newData"] is False
    shown = api.ok("GET", f"{base}/{src['id']}")
    assert shown["status"] == "FRESH" and shown["dataVersion"] == "d1"
    assert api.ok("GET", f"{base}?status=MISSING")["items"][0]["name"] == "clean"
    assert api.ok("GET", f"{base}?late=true")["items"] == []
    m = Model(runtime, model_id, {"src": src["id"], "clean": clean["id"]})
    m.loop().run_once()
    m.settled()
    refreshes = api.ok("GET", f"{base}/{clean['id']}/refreshes")
    assert [r["reason"] for r in refreshes["items"]] == ["clean is missing (maximum lag 1 h)"]
    assert refreshes["items"][0]["status"] == "FINISHED"
    job = api.ok("GET", f"/jobs/{refreshes['items'][0]['jobId']}")  # the job carries it too
    assert job["asset"]["reason"] == "clean is missing (maximum lag 1 h)"
    assert refreshes["nextCursor"] is None
    evaluations = api.ok("GET", f"{base}/{clean['id']}/evaluations")["items"]
    assert evaluations[0]["requested"] is True
    conditions = evaluations[0]["conditions"]["conditions"]
    assert {c["condition"] for c in conditions} >= {"status", "automation is reconcile"}
    ticks = api.ok("GET", f"/models/{model_id}/automation/ticks")["items"]
    assert ticks[0]["requested"] == 1 and ticks[0]["evaluated"] >= 1
    changed = api.ok("PATCH", f"{base}/{clean['id']}", json={"codeVersion": "2"})
    assert changed["status"] == "STALE"
    assert changed["causes"] == [{"cause": "CODE", "asset": "clean"}]
    error_of(api.call("POST", f"{base}/{clean['id']}/release"), 409, "not_held")
    assert api.ok("GET", f"/models/{model_id}/automation/events")["items"] == []


def test_every_refusal_is_a_4xx(api: Api, runtime: Runtime, live: LiveServer) -> None:
    model_id = int(api.model("auto")["id"])
    base = f"/models/{model_id}/assets"
    cases = [
        ({"name": "s", "kind": "source", "job": {"targetObject": "x.NOOP"}}, {"job"}),
        ({"name": "s", "kind": "source", "automation": "reconcile"}, {"automation"}),
        ({"name": "s", "kind": "source", "codeVersion": "1"}, {"codeVersion"}),
        ({"name": "j"}, {"job"}),
        ({"name": "j", "kind": "table"}, {"kind"}),
        ({"name": "j", "job": {"targetObject": "x.NOOP"}, "automation": "on"}, {"automation"}),
        (
            {"name": "j", "job": {"targetObject": "x.NOOP"}, "freshness": {"maximumLagMinutes": 0}},
            {"freshness.maximumLagMinutes"},
        ),
        (
            {
                "name": "j",
                "job": {"targetObject": "x.NOOP"},
                "freshness": {"maximumLagMinutes": 5, "cronSchedule": "nope"},
            },
            {"freshness.cronSchedule"},
        ),
        (
            {
                "name": "j",
                "job": {"targetObject": "x.NOOP"},
                "observe": {"type": "FILE_MTIME", "path": "/tmp/x"},
            },
            {"observe"},
        ),
        (
            {"name": "s", "kind": "source", "observe": {"type": "FTP", "path": "/x"}},
            {"observe.type"},
        ),
    ]
    for body, paths in cases:
        error = error_of(api.call("POST", base, json=body), 400, "invalid_asset")
        assert set(error["details"]) == paths, (body, error)
    job = api.asset(model_id, "j")
    src = api.ok("POST", base, 201, json={"name": "s", "kind": "source"})
    error_of(api.call("PATCH", f"{base}/{src['id']}", json={"kind": "job"}), 400, "invalid_asset")
    obs = f"{base}/{job['id']}/observations"
    error_of(api.call("POST", obs, json={"dataVersion": "x"}), 409, "not_a_source")
    error_of(
        api.call("POST", f"{base}/{src['id']}/observations", json={}), 400, "invalid_observation"
    )
    error_of(
        api.call("POST", f"{base}/999/observations", json={"dataVersion": "x"}), 404, "not_found"
    )
    error_of(api.call("GET", f"{base}?status=BAD"), 400, "invalid_query")
    error_of(api.call("GET", f"{base}/{job['id']}/refreshes?limit=0"), 400, "invalid_query")
    error_of(api.call("GET", "/models/999/automation/ticks"), 404, "not_found")
    _, token = tokens.create(runtime.db, "submitter", "nope")
    submitter = Api(live.url, {"Authorization": f"Bearer {token}"})
    assert (
        submitter.call(
            "POST", f"{base}/{src['id']}/observations", json={"dataVersion": "x"}
        ).status_code
        == 403
    )
    assert api.ok("GET", f"{base}/{src['id']}")["status"] == "MISSING"
