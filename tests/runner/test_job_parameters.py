"""Job parameters are checked at submission against their type's schema (jobs/params.py),
at the node's path like any payload error, and the function receives them loaded."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from marshmallow import validate

from app.runner.worker_pool import WorkerPool
from app.store import queries
from app.store.database import Database
from jobs import REGISTRY, JobContext, job_type
from jobs.params import Integer, Parameters, String
from tests.helpers import AUTH, LiveServer, wait_for_status


def post(live: LiveServer, body: Any) -> requests.Response:
    return requests.post(f"{live.url}/api/v1/jobs", json=body, headers=AUTH, timeout=30)


def details_of(response: requests.Response) -> dict[str, list[str]]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    details: dict[str, list[str]] = error["details"]
    return details


def test_a_sleep_with_text_seconds_is_refused_at_its_path(live: LiveServer, db: Database) -> None:
    response = post(live, {"targetObject": "x.SLEEP", "parameters": {"seconds": "abc"}})
    assert details_of(response) == {"parameters.seconds": ["Not a valid number."]}
    nested = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "SLEEP", "parameters": {}}]}
    nested["nextJobs"][0]["parameters"] = {"seconds": -1, "extra": 1}  # type: ignore[index]
    found = details_of(post(live, nested))
    assert set(found) == {"nextJobs[0].parameters.seconds", "nextJobs[0].parameters.extra"}
    assert found["nextJobs[0].parameters.extra"] == ["Unknown field."]
    assert queries.count_by_status(db) == {} or sum(queries.count_by_status(db).values()) == 0


def test_a_shell_job_without_its_command_is_refused(live: LiveServer) -> None:
    found = details_of(post(live, {"targetObject": "load.SHELL", "parameters": {"cwd": "/"}}))
    assert list(found) == ["parameters.command"]
    assert "is required" in found["parameters.command"][0]
    shell_string = {"targetObject": "SHELL", "parameters": {"command": "ls -l"}}
    assert "not a shell string" in details_of(post(live, shell_string))["parameters.command"][0]


def test_every_built_in_type_declares_its_parameters() -> None:
    for name in ("NOOP", "SLEEP", "FAIL", "SHELL", "HTTP", "EXTERNAL", "JOIN", "CF"):
        found = REGISTRY.get(name)
        assert found is not None and found.params is not None, name


class ReportParameters(Parameters):
    region = String(required=True, validate=validate.OneOf(["north", "south"]))
    year = Integer(load_default=2026, validate=validate.Range(2000, 2100))


SEEN: dict[int, dict[str, Any]] = {}
REPORT = f"RPT_{uuid.uuid4().hex[:8].upper()}"


@job_type(REPORT, params=ReportParameters)
def build_report(ctx: JobContext) -> dict[str, Any]:
    """Builds a report; the test checks what it was handed."""
    SEEN[ctx.job_id] = dict(ctx.parameters)
    return {"region": ctx.parameters["region"]}


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({}, {"parameters.region": ["Missing data for required field."]}),
        ({"region": "east"}, {"parameters.region": ["Must be one of: north, south."]}),
        ({"region": "north", "year": "2026"}, {"parameters.year": ["Not a valid integer."]}),
    ],
)
def test_a_user_type_with_a_schema_refuses_bad_parameters(
    live: LiveServer, parameters: dict[str, Any], problem: dict[str, list[str]]
) -> None:
    response = post(live, {"targetObject": f"q1.{REPORT}", "parameters": parameters})
    assert details_of(response) == problem


def test_the_function_receives_the_loaded_parameters(
    live: LiveServer, pool: WorkerPool, db: Database
) -> None:
    response = post(live, {"targetObject": f"q1.{REPORT}", "parameters": {"region": "north"}})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    assert wait_for_status(db, job_id, "FINISHED", "FAILED") == "FINISHED"
    assert SEEN[job_id] == {"region": "north", "year": 2026}
    stored = queries.get_job(db, job_id)
    assert stored is not None and stored["parameters"] == {"region": "north"}  # as submitted


def test_job_types_show_each_parameter_schema(live: LiveServer) -> None:
    response = requests.get(f"{live.url}/api/v1/job-types", headers=AUTH, timeout=30)
    assert response.status_code == 200
    types = {item["name"]: item for item in response.json()["items"]}
    sleep = types["SLEEP"]["parameters"]
    assert sleep["properties"]["seconds"]["type"] == "number"
    assert sleep["additionalProperties"] is False
    assert types["SHELL"]["parameters"]["required"] == ["command"]
    report = types[REPORT]["parameters"]
    assert report["required"] == ["region"]
    assert report["properties"]["region"]["enum"] == ["north", "south"]
    assert types["NOOP"]["parameters"]["additionalProperties"] is True
