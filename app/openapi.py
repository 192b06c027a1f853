"""The OpenAPI 3 description, generated from the marshmallow schemas and view docstrings."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring
from flask import Flask

from app.api import ListArgsSchema
from app.payload import ChainedJobInfoSchema
from app.schemas import (
    ErrorSchema,
    JobEventSchema,
    JobLogSchema,
    JobPageSchema,
    JobSchema,
    JobTreeSchema,
    JobTypeSchema,
)

SCHEMAS = {
    "ChainedJobInfo": ChainedJobInfoSchema,
    "Job": JobSchema,
    "JobTree": JobTreeSchema,
    "JobPage": JobPageSchema,
    "JobEvent": JobEventSchema,
    "JobLog": JobLogSchema,
    "JobType": JobTypeSchema,
    "ListArgs": ListArgsSchema,
    "Error": ErrorSchema,
}


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="jobchain",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Submit chained jobs and follow them to the end."},
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("static"):
            continue
        view = app.view_functions[rule.endpoint]
        operations = load_operations_from_docstring(view.__doc__ or "")
        if not operations:
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        spec.path(path=path, operations=operations)
    return spec.to_dict()
