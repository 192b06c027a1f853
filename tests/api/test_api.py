"""The JSON API over real HTTP (waitress), on SQLite and PostgreSQL.

Every rejection must be a 4xx with the one error shape, and must store nothing.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
import requests

from app.domain import jsontext
from app.domain.payload import unwrap
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import queries
from app.store.database import Database
from app.web import create_app
from tests.helpers import AUTH, LiveServer, flatten, wait_for_chain, wait_for_status

JOB_FIELDS = {
    "id",
    "targetObject",
    "jobType",
    "targetId",
    "parameters",
    "executeOnError",
    "status",
    "parentId",
    "rootId",
    "nextJobIds",
    "attempt",
    "message",
    "result",
    "progress",
    "createdAt",
    "startedAt",
    "finishedAt",
}
HUGE_ID = 99999999999999999999
JSON = {"Content-Type": "application/json"}
TREE: dict[str, Any] = {
    "targetObject": "155.NOOP",
    "parameters": {"price": 1.5},
    "nextJobs": [
        {"targetObject": "38.NOOP", "executeOnError": True},
        {"targetObject": "39.NOOP", "nextJobs": [{"targetObject": "40.NOOP"}]},
    ],
}


class Api:
    """A keep-alive session bound to one live server's /api/v1, sending the admin token."""

    def __init__(self, url: str):
        self.root = url
        self.base = f"{url}/api/v1"
        self.session = requests.Session()
        self.session.headers.update(AUTH)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def submit(self, body: Any) -> dict[str, Any]:
        response = self.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.session.close()


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    """The error body, after checking the status and the one error shape."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def job_count(db: Database) -> int:
    return sum(queries.count_by_status(db).values())


def parse_time(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- submit, get, tree ---------------------------------------------------------------------


def test_submit_returns_201_location_and_the_root_job(api: Api) -> None:
    response = api.post("/jobs", json=TREE)
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert set(job) >= JOB_FIELDS
    assert job["targetObject"] == "155.NOOP"
    assert (job["jobType"], job["targetId"]) == ("NOOP", "155")
    assert job["parameters"] == {"price": 1.5}
    assert job["executeOnError"] is False
    assert job["status"] == "WAITING_FOR_DISPATCH"
    assert (job["parentId"], job["rootId"]) == (None, job["id"])
    assert len(job["nextJobIds"]) == 2
    assert (job["attempt"], job["startedAt"], job["finishedAt"]) == (0, None, None)
    parse_time(job["createdAt"])
    again = api.session.get(api.root + response.headers["Location"], timeout=30)
    assert again.status_code == 200
    assert again.json()["id"] == job["id"]


def test_enveloped_submission_and_child_fields(api: Api) -> None:
    root = api.submit({"data": TREE})
    first, second = root["nextJobIds"]
    child = api.get(f"/jobs/{first}").json()
    assert child["targetObject"] == "38.NOOP"
    assert child["executeOnError"] is True
    assert child["status"] == "WAITING_FOR_PARENT"
    assert (child["parentId"], child["rootId"]) == (root["id"], root["id"])
    assert child["parameters"] == {}
    grandchild_id = api.get(f"/jobs/{second}").json()["nextJobIds"][0]
    assert api.get(f"/jobs/{grandchild_id}").json()["targetObject"] == "40.NOOP"


def test_tree_nests_next_jobs_from_any_node(api: Api) -> None:
    root = api.submit(TREE)
    tree = api.get(f"/jobs/{root['id']}/tree").json()

    def shape(node: dict[str, Any]) -> Any:
        return [node["targetObject"], [shape(child) for child in node["nextJobs"]]]

    assert shape(tree) == ["155.NOOP", [["38.NOOP", []], ["39.NOOP", [["40.NOOP", []]]]]]
    assert tree["nextJobIds"] == [child["id"] for child in tree["nextJobs"]]
    subtree = api.get(f"/jobs/{root['nextJobIds'][1]}/tree").json()
    assert shape(subtree) == ["39.NOOP", [["40.NOOP", []]]]


def test_deepest_allowed_tree_round_trips(api: Api) -> None:
    """10,000 levels (the default max_depth, = max_nodes) with 32-deep parameters at the
    leaf: accepted, stored, and its tree still encodes (past what the json module can)."""
    deepest: Any = "leaf"
    for _ in range(31):
        deepest = [deepest]
    body: dict[str, Any] = {"targetObject": "10000.NOOP", "parameters": {"x": deepest}}
    for level in range(9999, 0, -1):
        body = {"targetObject": f"{level}.NOOP", "nextJobs": [body]}
    raw = jsontext.dumps(body)
    assert len(raw) < 1024 * 1024
    answer = api.post("/jobs", data=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 201, answer.text[:500]
    tree = api.get(f"/jobs/{answer.json()['id']}/tree")
    assert tree.status_code == 200
    node = jsontext.loads(tree.content)
    for level in range(1, 10_000):
        assert node["targetObject"] == f"{level}.NOOP"
        (node,) = node["nextJobs"]
    assert (node["targetObject"], node["parameters"], node["nextJobs"]) == (
        "10000.NOOP",
        {"x": deepest},
        [],
    )


# -- list --------------------------------------------------------------------------------


@pytest.fixture
def three_trees(api: Api) -> list[list[int]]:
    """Three stored trees (4, 1 and 6 jobs); their job ids, root first."""
    bodies = [
        TREE,
        {"targetObject": "solo.FAIL"},
        {
            "targetObject": "7.NOOP",
            "nextJobs": [{"targetObject": f"{i}.NOOP"} for i in range(5)],
        },
    ]
    trees = []
    for body in bodies:
        root = api.submit(body)
        tree = api.get(f"/jobs/{root['id']}/tree").json()
        trees.append([node["id"] for node in flatten(tree)])
    return trees


def walk_pages(api: Api, limit: int, **filters: Any) -> tuple[list[int], int]:
    """Follow nextCursor to the end; returns every id seen (in order) and the page count."""
    seen: list[int] = []
    cursor, pages = None, 0
    while True:
        params = {**filters, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "nextCursor"}
        assert len(page["items"]) <= limit
        seen += [job["id"] for job in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            return seen, pages


def test_cursor_walk_sees_every_job_once_newest_first(
    api: Api, three_trees: list[list[int]]
) -> None:
    every = sorted((i for tree in three_trees for i in tree), reverse=True)
    for limit in (1, 3, 11, 500):
        seen, pages = walk_pages(api, limit)
        assert seen == every
        assert pages == max(1, -(-len(every) // limit))
    first = api.get("/jobs").json()
    assert [job["id"] for job in first["items"]] == every
    assert first["nextCursor"] is None


def test_list_filters(api: Api, three_trees: list[list[int]]) -> None:
    roots = sorted((tree[0] for tree in three_trees), reverse=True)
    seen, _ = walk_pages(api, 2, status="WAITING_FOR_DISPATCH")
    assert seen == roots
    seen, pages = walk_pages(api, 4, rootId=three_trees[2][0])
    assert (seen, pages) == (sorted(three_trees[2], reverse=True), 2)
    assert walk_pages(api, 50, targetObject="38.NOOP")[0] == [three_trees[0][1]]
    assert walk_pages(api, 50, jobType="FAIL")[0] == [three_trees[1][0]]
    assert walk_pages(api, 50, status="FINISHED")[0] == []
    both = walk_pages(api, 50, rootId=three_trees[0][0], status="WAITING_FOR_PARENT")[0]
    assert both == sorted(three_trees[0][1:], reverse=True)


def test_bad_query_parameters_are_400(api: Api) -> None:
    for field, value in [
        ("status", "BOGUS"),
        ("status", ""),
        ("limit", "0"),
        ("limit", "501"),
        ("limit", "abc"),
        ("limit", "1.5"),
        ("limit", ""),
        ("cursor", "0"),
        ("cursor", str(HUGE_ID)),
        ("rootId", "x"),
        ("targetObject", "x" * 256),
        ("targetObject", "\x00.NOOP"),
        ("jobType", "NO\nOP"),
        ("sort", "id"),
    ]:
        error = error_of(api.get("/jobs", params={field: value}), 400)
        assert error["code"] == "invalid_query"
        assert list(error["details"]) == [field], (field, value)


# -- events, cancel, retry -------------------------------------------------------------------


def test_events_cancel_and_retry(api: Api) -> None:
    root = api.submit(TREE)
    rid = root["id"]
    events = api.get(f"/jobs/{rid}/events").json()["items"]
    assert [(e["fromStatus"], e["toStatus"], e["reason"]) for e in events] == [
        (None, "WAITING_FOR_DISPATCH", "submit")
    ]
    assert events[0]["jobId"] == rid
    parse_time(events[0]["at"])

    error = error_of(api.post(f"/jobs/{rid}/retry"), 409)
    assert error["code"] == "conflict"

    cancelled = api.post(f"/jobs/{rid}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    tree = api.get(f"/jobs/{rid}/tree").json()
    assert {node["status"] for node in flatten(tree)} == {"CANCELLED"}
    assert error_of(api.post(f"/jobs/{rid}/cancel"), 409)["code"] == "conflict"
    child = root["nextJobIds"][0]
    assert error_of(api.post(f"/jobs/{child}/cancel"), 409)["code"] == "conflict"

    retried = api.post(f"/jobs/{rid}/retry")
    assert retried.status_code == 200
    assert retried.json()["status"] == "WAITING_FOR_DISPATCH"
    assert api.get(f"/jobs/{child}").json()["status"] == "WAITING_FOR_PARENT"
    events = api.get(f"/jobs/{rid}/events").json()["items"]
    assert [e["toStatus"] for e in events] == [
        "WAITING_FOR_DISPATCH",
        "CANCELLED",
        "WAITING_FOR_DISPATCH",
    ]
    assert error_of(api.post(f"/jobs/{rid}/retry"), 409)["code"] == "conflict"


def test_log_of_a_job_that_never_ran_is_empty(api: Api) -> None:
    rid = api.submit({"targetObject": "NOOP"})["id"]
    log = api.get(f"/jobs/{rid}/log").json()
    assert log == {"jobId": rid, "lines": [], "droppedBytes": 0}


def test_unknown_id_is_404_json(api: Api) -> None:
    api.submit({"targetObject": "NOOP"})
    for job_id in (424242, 2**63 - 1, 2**63, HUGE_ID, 10**400):
        for method, suffix in [
            (api.get, ""),
            (api.get, "/tree"),
            (api.get, "/events"),
            (api.get, "/log"),
            (api.post, "/cancel"),
            (api.post, "/retry"),
        ]:
            error = error_of(method(f"/jobs/{job_id}{suffix}"), 404)
            assert error["code"] == "not_found", (job_id, suffix)


def test_unknown_routes_and_methods_are_json(api: Api) -> None:
    assert error_of(api.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(api.get("/jobs/-1"), 404)["code"] == "not_found"
    response = api.session.delete(f"{api.base}/jobs/1", timeout=30)
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


# -- job types, health, OpenAPI --------------------------------------------------------------


def test_job_types(api: Api) -> None:
    items = api.get("/job-types").json()["items"]
    names = [item["name"] for item in items]
    assert {"NOOP", "SLEEP", "FAIL", "SHELL", "HTTP"} <= set(names)
    assert names == sorted(names)
    assert all(set(item) == {"name", "description", "role", "parameters"} for item in items)


def test_health(api: Api) -> None:
    for url in (f"{api.root}/health", f"{api.base}/health"):
        response = api.session.get(url, timeout=30)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}


def test_openapi_document(api: Api) -> None:
    spec = api.session.get(f"{api.root}/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.")
    assert spec == api.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/jobs"])
    for path in ("", "/tree", "/events", "/log"):
        assert "get" in paths[f"/api/v1/jobs/{{job_id}}{path}"]
    for action in ("cancel", "retry"):
        assert "409" in paths[f"/api/v1/jobs/{{job_id}}/{action}"]["post"]["responses"]
    assert "get" in paths["/api/v1/job-types"]
    schemas = spec["components"]["schemas"]
    # One variant per registered type: its TYPE in targetObject, its parameters' schema.
    variants = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ChainedJobInfo"]["anyOf"]]
    assert "ChainedJobInfo_SLEEP" in variants and "ChainedJobInfo_SHELL" in variants
    info = schemas["ChainedJobInfo_SLEEP"]
    assert info["properties"]["targetObject"]["pattern"].endswith(r"\.)?SLEEP$")
    assert info["properties"]["parameters"] == {"$ref": "#/components/schemas/SLEEPParameters"}
    assert schemas["SLEEPParameters"]["properties"]["seconds"]["type"] == "number"
    assert info["required"] == ["targetObject"]
    assert info["additionalProperties"] is False
    assert set(info["properties"]) == {
        "targetObject",
        "parameters",
        "executeOnError",
        "maxAttempts",
        "timeoutSeconds",
        "nextJobs",
    }
    assert info["properties"]["nextJobs"]["items"] == {
        "$ref": "#/components/schemas/ChainedJobInfo"
    }
    assert set(schemas["Job"]["properties"]) >= JOB_FIELDS
    assert schemas["Job"]["properties"]["createdAt"]["format"] == "date-time"
    list_params = {p["name"] for p in paths["/api/v1/jobs"]["get"]["parameters"]}
    assert {"status", "targetObject", "rootId", "limit", "cursor"} <= list_params

    refs: list[str] = []
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            refs += [node["$ref"]] if "$ref" in node else []
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    for operations in paths.values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                assert "description" in answer, (operation, status)


# -- rejected bodies -------------------------------------------------------------------------


INVALID_JSON = [
    b'{"targetObject": "NOOP"',
    b"",
    b"   ",
    b"{'targetObject': 'NOOP'}",
    b'{"targetObject": "NOOP"} trailing',
    b"\xff\xfe\xfa",
    b'{"targetObject": "\xff.NOOP"}',
    b"[" * 100_000,
    b"{" * 100_000,
    # Past the decoder's bound (2 x max_depth + parameters), though well-formed.
    b'{"data": ' + b"[" * 20_100 + b"]" * 20_100 + b"}",
    b'{"targetObject": "NOOP", "parameters": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    b'{"targetObject": "NOOP", "parameters": {"x": ' + b"9" * 5000 + b"}}",
]
# Decodable JSON that no database could store (or echo back as JSON): named, not a 500.
UNSTORABLE = [
    (b'{"targetObject": "NOOP", "timeoutSeconds": NaN}', "timeoutSeconds"),
    (b'{"targetObject": "NOOP", "parameters": {"x": Infinity}}', "parameters"),
    (b'{"targetObject": "NOOP", "parameters": {"x": -1e999}}', "parameters"),
    (b'{"targetObject": "\\u0000.NOOP"}', "targetObject"),
    (b'{"targetObject": "\\ud800.NOOP"}', "targetObject"),
    (b'{"targetObject": "NOOP", "nextJobs": [{"targetObject": "1.NOPE"}]}', "nextJobs[0]"),
]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"targetObject": "NOOP", "targetObject": "FAIL"}', "targetObject"),
        (b'{"targetObject": "NOOP", "parameters": {"x": 1, "x": 2}}', "x"),
        (
            b'{"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP", "maxAttempts": 1, '
            b'"maxAttempts": 3}]}',
            "maxAttempts",
        ),
    ],
)
def test_duplicate_keys_are_refused_by_name(api: Api, db: Database, raw: bytes, key: str) -> None:
    response = api.post("/jobs", data=raw, headers={"Content-Type": "application/json"})
    error = error_of(response, 400)
    assert error["code"] == "invalid_json"
    assert f'duplicate key "{key}"' in error["message"]
    assert error["details"] == {"key": key}
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0


def test_bad_bodies_are_400_and_store_nothing(api: Api, db: Database) -> None:
    for raw in INVALID_JSON:
        response = api.post("/jobs", data=raw, headers={"Content-Type": "application/json"})
        assert error_of(response, 400)["code"] == "invalid_json", raw[:60]
    for raw in [b"[]", b'[{"targetObject": "NOOP"}]', b'"NOOP"', b"1", b"null", b"true"]:
        error = error_of(api.post("/jobs", data=raw), 400)
        assert error["code"] == "invalid_payload"
        assert error["details"] == {"$": ["must be a JSON object"]}
    for raw, path in UNSTORABLE:
        error = error_of(api.post("/jobs", data=raw), 400)
        assert error["code"] == "invalid_payload"
        assert [p for p in error["details"] if p.startswith(path)], (raw, error)
    assert job_count(db) == 0


def test_unusual_but_valid_strings_are_stored(api: Api) -> None:
    body = {
        "targetObject": "Zürich 🚆.NOOP",
        "parameters": {"nul": "a\u0000b", "emoji": "🚆", "big": 10**30, "neg": -0.0},
    }
    job = api.submit(body)
    stored = api.get(f"/jobs/{job['id']}").json()
    assert stored["targetId"] == "Zürich 🚆"
    assert stored["parameters"] == body["parameters"]


def test_rejected_submissions_store_nothing(api: Api, db: Database) -> None:
    api.submit({"targetObject": "NOOP"})
    before = job_count(db)
    deep: dict[str, Any] = {"targetObject": "NOOP"}
    for _ in range(10_000):
        deep = {"targetObject": "NOOP", "nextJobs": [deep]}
    wide = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}] * 10_000}
    last_bad = copy.deepcopy(TREE)
    last_bad["nextJobs"][1]["nextJobs"][0]["targetObject"] = "40.NOPE"
    expected = {
        "nextJobs[1].nextJobs[0].targetObject": ["unknown job type 'NOPE'"],
    }
    error = error_of(api.post("/jobs", json=last_bad), 400)
    assert error["details"] == expected
    too_deep = api.post("/jobs", data=jsontext.dumps(deep), headers=JSON)
    assert list(error_of(too_deep, 400)["details"]) == [".".join(["nextJobs[0]"] * 10_000)]
    assert list(error_of(api.post("/jobs", json=wide), 400)["details"]) == ["nextJobs[9999]"]
    assert job_count(db) == before


def test_ten_thousand_jobs_in_one_submission(api: Api, db: Database) -> None:
    body = {
        "targetObject": "NOOP",
        "nextJobs": [{"targetObject": f"{i}.NOOP"} for i in range(9_999)],
    }
    root = api.submit(body)
    assert len(root["nextJobIds"]) == 9_999
    assert job_count(db) == 10_000


# -- body size -------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid payload of exactly ``size`` bytes (padding inside a parameter)."""
    head, tail = b'{"targetObject": "NOOP", "parameters": {"pad": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def chunks(raw: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


def test_body_over_one_mib_is_413(api: Api, db: Database) -> None:
    limit = 1024 * 1024
    assert api.post("/jobs", data=padded(limit)).status_code == 201
    error = error_of(api.post("/jobs", data=padded(limit + 1)), 413)
    assert error["code"] == "request_entity_too_large"
    assert job_count(db) == 1


def test_chunked_body_without_content_length(api: Api, db: Database) -> None:
    """A generator body is sent chunked; the limit must hold without Content-Length."""
    limit = 1024 * 1024
    small = api.post("/jobs", data=chunks(padded(1000), 100))
    assert small.status_code == 201, small.text
    assert "Content-Length" not in small.request.headers
    assert small.request.headers["Transfer-Encoding"] == "chunked"
    error_of(api.post("/jobs", data=chunks(padded(limit + 1))), 413)
    error_of(api.post("/jobs", data=chunks(b"[" * (3 * limit))), 413)
    assert job_count(db) == 1


def test_limits_are_configurable(runtime: Runtime, db: Database) -> None:
    settings = replace(runtime.settings, max_body_bytes=2000, max_depth=3, max_nodes=4)
    with LiveServer(create_app(runtime=replace(runtime, settings=settings))) as server:
        api = Api(server.url)
        error_of(api.post("/jobs", data=padded(2001)), 413)
        assert api.post("/jobs", data=padded(2000)).status_code == 201
        deep: dict[str, Any] = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}]}
        deep["nextJobs"][0]["nextJobs"] = [{"targetObject": "NOOP", "nextJobs": [{}]}]
        error = error_of(api.post("/jobs", json=deep), 400)
        assert error["details"] == {
            "nextJobs[0].nextJobs[0].nextJobs[0]": ["nested deeper than 3 levels"]
        }
        wide = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}] * 4}
        error = error_of(api.post("/jobs", json=wide), 400)
        assert error["details"] == {"nextJobs[3]": ["more than 4 jobs in one tree"]}
        api.session.close()
    assert job_count(db) == 1


# -- with workers ----------------------------------------------------------------------------


def test_chain_over_http_runs_to_finished(api: Api, db: Database, pool: WorkerPool) -> None:
    body = {
        "targetObject": "1.NOOP",
        "nextJobs": [
            {
                "targetObject": "2.SHELL",
                "parameters": {"command": ["echo", "hello from jobchain"]},
                "nextJobs": [{"targetObject": "3.NOOP"}],
            },
            {"targetObject": "4.SLEEP", "parameters": {"seconds": 0.01}},
        ],
    }
    root = api.submit(body)
    wait_for_chain(db, root["id"])
    tree = api.get(f"/jobs/{root['id']}/tree").json()
    nodes = flatten(tree)
    assert {node["status"] for node in nodes} == {"FINISHED"}
    for node in nodes:
        assert parse_time(node["startedAt"]) <= parse_time(node["finishedAt"])
        assert node["attempt"] == 1
    shell_id = tree["nextJobs"][0]["id"]
    log = api.get(f"/jobs/{shell_id}/log").json()
    assert log["jobId"] == shell_id
    assert any("hello from jobchain" in line for line in log["lines"])
    events = api.get(f"/jobs/{shell_id}/events").json()["items"]
    assert [e["toStatus"] for e in events] == [
        "WAITING_FOR_PARENT",
        "WAITING_FOR_DISPATCH",
        "PROCESSING",
        "FINISHED",
    ]
    assert walk_pages(api, 2, status="FINISHED", rootId=root["id"])[0] == sorted(
        (n["id"] for n in nodes), reverse=True
    )


def test_cancel_a_running_job_over_http(api: Api, db: Database, pool: WorkerPool) -> None:
    root = api.submit(
        {
            "targetObject": "SLEEP",
            "parameters": {"seconds": 30},
            "nextJobs": [{"targetObject": "NOOP"}],
        }
    )
    wait_for_status(db, root["id"], "PROCESSING")
    response = api.post(f"/jobs/{root['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["cancelRequested"] is True
    wait_for_status(db, root["id"], "CANCELLED")
    assert api.get(f"/jobs/{root['nextJobIds'][0]}").json()["status"] == "CANCELLED"


# -- fuzz ------------------------------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    100,
    101,
    1.5,
    -0.0,
    1e308,
    10**30,
    float("nan"),
    float("inf"),
    "",
    "NOOP",
    "155.NOOP",
    "x.FAIL",
    ".NOOP",
    "155.",
    "1.2.3-x",
    "\u0000",
    "\ud800.NOOP",
    "Zürich.SLEEP",
    "x" * 300,
    [],
    [{}],
    [None],
    [{"targetObject": "NOOP"}],
    {},
    {"targetObject": "NOOP"},
    {"data": {"targetObject": "NOOP"}},
]
FIELDS = ["targetObject", "parameters", "executeOnError", "maxAttempts", "timeoutSeconds"]


def nodes_of(tree: Any) -> list[dict[str, Any]]:
    """Every dict reachable through nextJobs lists (what a mutation may pick)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            children = node.get("nextJobs")
            if isinstance(children, list):
                stack.extend(children)
    return found


def valid_tree(rng: random.Random) -> dict[str, Any]:
    root: dict[str, Any] = {"targetObject": f"{rng.randint(1, 999)}.NOOP"}
    for _ in range(rng.randint(0, 6)):
        parent = rng.choice(nodes_of(root))
        child: dict[str, Any] = {"targetObject": rng.choice(["NOOP", "7.FAIL", "a.SLEEP"])}
        if rng.random() < 0.5:
            child["parameters"] = {"seconds": 0, "k": [1, {"v": "w"}]}
        if rng.random() < 0.3:
            child["executeOnError"] = rng.random() < 0.5
        if rng.random() < 0.3:
            child["maxAttempts"] = rng.randint(1, 100)
        if rng.random() < 0.3:
            child["timeoutSeconds"] = rng.choice([0.5, 10, 3600])
        parent.setdefault("nextJobs", []).append(child)
    return root


def mutate(rng: random.Random, tree: dict[str, Any]) -> Any:
    """One random structural change to a valid tree (it may stay valid)."""
    node = rng.choice(nodes_of(tree))
    kind = rng.randrange(7)
    if kind == 0:
        node.pop(rng.choice([*FIELDS, "nextJobs"]), None)
    elif kind == 1:
        node[rng.choice([*FIELDS, "nextJobs"])] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif kind == 2:
        node[rng.choice(["extra", "next_jobs", "TargetObject", "data", ""])] = 1
    elif kind == 3:
        node.setdefault("nextJobs", []).append(copy.deepcopy(rng.choice(ODD_VALUES)))
    elif kind == 4:
        node["parameters"] = {"deep": json.loads("[" * 40 + "]" * 40)}
    elif kind == 5:
        return {"data": tree} if rng.random() < 0.5 else copy.deepcopy(rng.choice(ODD_VALUES))
    else:
        node["targetObject"] = rng.choice(["NOOP", "JOB", "x.noop", "1.SLEEP", "L" * 65])
    return tree


def mangle(rng: random.Random, raw: bytes) -> bytes:
    """Byte-level damage: delete, duplicate or replace a random slice."""
    data = bytearray(raw)
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 8))
    kind = rng.randrange(3)
    if kind == 0:
        del data[start:end]
    elif kind == 1:
        data[start:start] = data[start:end]
    else:
        data[start:end] = bytes(rng.choice(b'{}[]",:0\\ex\x00\xff') for _ in range(end - start))
    return bytes(data)


def test_fuzzed_payloads_get_201_or_4xx_never_5xx(api: Api, db: Database) -> None:
    rng = random.Random(20261122)
    accepted_jobs = 0
    for case in range(300):
        body: Any = valid_tree(rng)
        for _ in range(rng.randint(1, 3)):
            body = mutate(rng, body) if isinstance(body, dict) else body
        raw = json.dumps(body).encode()
        if case % 3 == 0:
            raw = mangle(rng, raw)
        response = api.post("/jobs", data=raw)
        assert response.status_code == 201 or 400 <= response.status_code < 500, (
            raw[:300],
            response.status_code,
            response.text[:300],
        )
        if response.status_code == 201:
            sent = unwrap(json.loads(raw))
            tree = api.get(f"/jobs/{response.json()['id']}/tree").json()
            assert len(flatten(tree)) == len(nodes_of(sent))
            accepted_jobs += len(nodes_of(sent))
        else:
            error_of(response, response.status_code)
    assert accepted_jobs > 0
    assert job_count(db) == accepted_jobs
