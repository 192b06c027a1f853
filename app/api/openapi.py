"""The OpenAPI 3 description, generated from the marshmallow schemas and view docstrings."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring
from flask import Flask

from app.api.automation import (
    AssetEventPageSchema,
    AssetRefreshPageSchema,
    EvaluationPageSchema,
    ObservationInputSchema,
    ObservationSchema,
    TickPageSchema,
)
from app.api.graph_schemas import (
    AssetInputDocSchema,
    AssetListSchema,
    AssetPatchSchema,
    AssetSchema,
    DependencyInputSchema,
    DependencyListSchema,
    DependencySchema,
    GraphInputDocSchema,
    GraphSchema,
    ModelInputSchema,
    ModelListSchema,
    ModelPatchSchema,
    ModelSchema,
    OrderSchema,
)
from app.api.jobs import ListArgsSchema
from app.api.joins import JoinSchema
from app.api.notifications import (
    DeliveryListSchema,
    RuleInputSchema,
    RuleListSchema,
    RulePatchSchema,
    RuleSchema,
)
from app.api.openapi_rules import tighten
from app.api.run_schemas import (
    AssetJobSchema,
    BatchSchema,
    RunInputSchema,
    RunListSchema,
    RunSchema,
)
from app.api.schedules import (
    ScheduleInputDocSchema,
    ScheduleListSchema,
    SchedulePatchSchema,
    ScheduleSchema,
)
from app.api.schemas import (
    EpochDateTime,
    ErrorSchema,
    JobEventListSchema,
    JobEventSchema,
    JobLogSchema,
    JobPageSchema,
    JobSchema,
    JobTreeSchema,
    JobTypeListSchema,
    JobTypeSchema,
)
from app.domain.payload import ChainedJobInfoSchema
from app.security.tokens import document_security

SCHEMAS = {
    "ChainedJobInfo": ChainedJobInfoSchema,
    "Job": JobSchema,
    "JobTree": JobTreeSchema,
    "JobPage": JobPageSchema,
    "JobEvent": JobEventSchema,
    "JobEventList": JobEventListSchema,
    "JobLog": JobLogSchema,
    "JobType": JobTypeSchema,
    "JobTypeList": JobTypeListSchema,
    "ListArgs": ListArgsSchema,
    "Error": ErrorSchema,
    "Join": JoinSchema,
    "Schedule": ScheduleSchema,
    "ScheduleList": ScheduleListSchema,
    "ScheduleInput": ScheduleInputDocSchema,
    "SchedulePatch": SchedulePatchSchema,
    "Model": ModelSchema,
    "ModelList": ModelListSchema,
    "ModelInput": ModelInputSchema,
    "ModelPatch": ModelPatchSchema,
    "Asset": AssetSchema,
    "AssetList": AssetListSchema,
    "AssetInput": AssetInputDocSchema,
    "AssetPatch": AssetPatchSchema,
    "Dependency": DependencySchema,
    "DependencyList": DependencyListSchema,
    "DependencyInput": DependencyInputSchema,
    "Order": OrderSchema,
    "Graph": GraphSchema,
    "GraphInput": GraphInputDocSchema,
    "NotificationRule": RuleSchema,
    "NotificationRuleList": RuleListSchema,
    "NotificationRuleInput": RuleInputSchema,
    "NotificationRulePatch": RulePatchSchema,
    "NotificationDeliveryList": DeliveryListSchema,
    "Run": RunSchema,
    "RunList": RunListSchema,
    "RunInput": RunInputSchema,
    "Batch": BatchSchema,
    "AssetJob": AssetJobSchema,
    "Observation": ObservationSchema,
    "ObservationInput": ObservationInputSchema,
    "AssetRefreshPage": AssetRefreshPageSchema,
    "EvaluationPage": EvaluationPageSchema,
    "TickPage": TickPageSchema,
    "AssetEventPage": AssetEventPageSchema,
}


def build_spec(app: Flask) -> dict[str, Any]:
    """The spec of every documented route under /api/v1 (views with a YAML docstring)."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="jobchain",
        version="1",
        openapi_version="3.0.3",
        plugins=[marshmallow],
        info={"description": "Submit chained jobs and follow them to the end."},
    )
    marshmallow.map_to_openapi_type(EpochDateTime, "string", "date-time")
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("static"):
            continue
        view = app.view_functions[rule.endpoint]
        operations = load_operations_from_docstring(view.__doc__ or "")
        if not operations:
            continue
        spec.path(path=re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), operations=operations)
    document = spec.to_dict()
    _describe_responses(document)
    document_security(document)
    tighten(document, app.extensions["jobchain"].registry)
    return document


def _describe_responses(document: dict[str, Any]) -> None:
    """OpenAPI requires a description on every response; a terse docstring may omit it."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if isinstance(response, dict) and "$ref" not in response:
                    response.setdefault("description", _phrase(str(status)))


def _phrase(status: str) -> str:
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return status
