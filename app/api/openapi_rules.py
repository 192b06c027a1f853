"""What makes the OpenAPI document as strict as the server, added after apispec built it.

apispec describes each marshmallow field on its own; the rules the server applies across
fields or from live state are added here: a node's parameters depend on its job type (one
variant of ChainedJobInfo per registered type), cron and time zone patterns, the envelope
``{"data": ...}`` every body may come in, the 413 and 503 any operation can answer, and
links from a created job or schedule to what can be done with it (for clients and stateful
fuzzers alike).
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from app.api.schemas import parameters_schema
from app.domain.cron import MAX_CRON_LENGTH
from jobs.registry import Registry

REF = "#/components/schemas/"
# Any character but a control character (Unicode Cc): what query strings may hold.
NO_CONTROLS = r"^[^\u0000-\u001f\u007f-\u009f]*$"
ERROR = {"application/json": {"schema": {"$ref": f"{REF}Error"}}}
BODY_METHODS = {"post", "patch", "put"}

# crontab fields: numbers in range, names, *, ranges, lists and steps (what a regex can say;
# a backward range or a date that never comes is still a 400).
_STEP = r"(/0*[1-9][0-9]?)?"


def _field(value: str) -> str:
    item = rf"(\*{_STEP}|({value})(-({value}))?{_STEP})"
    return rf"{item}(,{item})*"


_MINUTE = _field(r"0?[0-9]|[1-5][0-9]")
_HOUR = _field(r"0?[0-9]|1[0-9]|2[0-3]")
_DAY = _field(r"0?[1-9]|[12][0-9]|3[01]")
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_MONTH = _field(rf"0?[1-9]|1[0-2]|{_MONTHS}|{_MONTHS.upper()}")
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
_WEEKDAY = _field(rf"[0-7]|{_DAYS}|{_DAYS.upper()}")
CRON = rf"^ *{_MINUTE} +{_HOUR} +{_DAY} +{_MONTH} +{_WEEKDAY} *$"


def tighten(document: dict[str, Any], registry: Registry) -> None:
    """Apply every rule above to a built document, in place."""
    schemas = document["components"]["schemas"]
    _job_variants(schemas, registry)
    _schedule_fields(schemas)
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                _common_answers(method, operation)
                _query_strings(operation)
    _links(document)


def _job_variants(schemas: dict[str, Any], registry: Registry) -> None:
    """ChainedJobInfo as one variant per registered type: its targetObject ends with that
    TYPE and its parameters follow that type's schema."""
    node = schemas.pop("ChainedJobInfo")
    variants = []
    for job_type in registry.all():
        name = f"ChainedJobInfo_{job_type.name}"
        schemas[f"{job_type.name}Parameters"] = parameters_schema(job_type.params)
        variant = {**node, "properties": dict(node["properties"])}
        target = dict(node["properties"]["targetObject"])
        key = "" if job_type.name in ("JOIN", "CF") else "?"  # a JOIN needs its key
        target["pattern"] = rf"^([^\u0000-\u001f\u007f-\u009f]+\.){key}{re.escape(job_type.name)}$"
        variant["properties"]["targetObject"] = target
        variant["properties"]["parameters"] = {"$ref": f"{REF}{job_type.name}Parameters"}
        variant["properties"]["nextJobs"] = {
            "type": "array",
            "items": {"$ref": f"{REF}ChainedJobInfo"},
        }
        schemas[name] = variant
        variants.append({"$ref": f"{REF}{name}"})
    schemas["ChainedJobInfo"] = {
        "description": "A job and the jobs that follow it; one variant per registered type",
        "anyOf": variants,
    }
    # A JOIN joins jobs above it, so it is never a tree's root.
    roots = [v for v in variants if not v["$ref"].endswith(("_JOIN", "_CF"))]
    schemas["ChainedJobInfoRoot"] = {"anyOf": roots}
    schemas["ChainedJobInfoBody"] = {
        "oneOf": [
            {"$ref": f"{REF}ChainedJobInfoRoot"},
            {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {"data": {"$ref": f"{REF}ChainedJobInfoRoot"}},
            },
        ]
    }


def _schedule_fields(schemas: dict[str, Any]) -> None:
    zones = sorted(zoneinfo.available_timezones() | {"UTC"})
    for name in ("ScheduleInput", "SchedulePatch", "Schedule"):
        properties = schemas[name]["properties"]
        properties["cron"] = {**properties["cron"], "pattern": CRON, "maxLength": MAX_CRON_LENGTH}
        properties["timezone"] = {**properties["timezone"], "enum": zones}
        properties["name"] = {**properties["name"], "pattern": NO_CONTROLS}
        if name == "Schedule":
            properties["job"] = {"$ref": f"{REF}ChainedJobInfo"}
        else:
            properties["job"] = {"$ref": f"{REF}ChainedJobInfoBody"}
    for name in ("ScheduleInput", "SchedulePatch"):
        schemas[f"{name}Body"] = {
            "oneOf": [
                {"$ref": f"{REF}{name}"},
                {
                    "type": "object",
                    "required": ["data"],
                    "additionalProperties": False,
                    "properties": {"data": {"$ref": f"{REF}{name}"}},
                },
            ]
        }


def _common_answers(method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    if method in BODY_METHODS:
        responses.setdefault("413", {"description": "Body too large", "content": ERROR})
    if operation.get("security") != []:  # open operations answer without the database
        responses.setdefault(
            "503",
            {
                "description": "The database is busy or unreachable; try again later",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": ERROR,
            },
        )


def _query_strings(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        query_text = parameter.get("in") == "query" and schema.get("type") == "string"
        if query_text and "enum" not in schema:
            schema.setdefault("pattern", NO_CONTROLS)


_JOB_LINKS = {
    "getJob": "GET the job",
    "getTree": "its tree",
    "jobEvents": "its events",
    "jobLog": "its log",
    "cancelJob": "cancel it",
    "retryJob": "retry it",
}
_SCHEDULE_LINKS = {
    "getSchedule": "GET the schedule",
    "updateSchedule": "change it",
    "deleteSchedule": "delete it",
}


def _links(document: dict[str, Any]) -> None:
    """operationIds from the view names, then links from what creates a job or schedule."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                operation.setdefault("operationId", _operation_id(method, path))
    paths = document.get("paths", {})
    for path, status, links, parameter in [
        ("/api/v1/jobs", "201", _JOB_LINKS, "job_id"),
        ("/api/v1/jobs", "200", _JOB_LINKS, "job_id"),
        ("/api/v1/schedules", "201", _SCHEDULE_LINKS, "schedule_id"),
    ]:
        response = paths.get(path, {}).get("post", {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {
            operation_id: {
                "operationId": operation_id,
                "parameters": {parameter: "$response.body#/id"},
                "description": description,
            }
            for operation_id, description in links.items()
        }


_IDS = {
    ("post", "/api/v1/jobs"): "submitJob",
    ("get", "/api/v1/jobs"): "listJobs",
    ("get", "/api/v1/jobs/{job_id}"): "getJob",
    ("get", "/api/v1/jobs/{job_id}/tree"): "getTree",
    ("get", "/api/v1/jobs/{job_id}/events"): "jobEvents",
    ("get", "/api/v1/jobs/{job_id}/log"): "jobLog",
    ("post", "/api/v1/jobs/{job_id}/cancel"): "cancelJob",
    ("post", "/api/v1/jobs/{job_id}/retry"): "retryJob",
    ("post", "/api/v1/schedules"): "createSchedule",
    ("get", "/api/v1/schedules/{schedule_id}"): "getSchedule",
    ("patch", "/api/v1/schedules/{schedule_id}"): "updateSchedule",
    ("delete", "/api/v1/schedules/{schedule_id}"): "deleteSchedule",
}


def _operation_id(method: str, path: str) -> str:
    known = _IDS.get((method, path))
    if known:
        return known
    words = re.findall(r"[A-Za-z]+", path.removeprefix("/api/v1"))
    return method + "".join(word[:1].upper() + word[1:] for word in words)
