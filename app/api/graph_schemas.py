"""Shapes and checks of the models API (``models.py``, ``model_graph.py``): what a model, an
asset, a dependency and a graph file look like in and out, and the checks an asset passes
before it is stored, reporting every bad field at once with its path."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from app.api.errors import ApiError
from app.api.schemas import EpochDateTime
from app.api.shared import printable, runtime
from app.domain.cron import InvalidSchedule, cron_schedule
from app.domain.join_plan import JOIN_TYPES
from app.domain.payload import ChainedJobInfoSchema, PayloadError, StrictInteger, flatten, unwrap
from app.services.submit import SubmitService

NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
NAME_RULE = "1 to 100 letters, digits, _ . or -"
MAX_DESCRIPTION = 2000
# Any cron: only to check a time zone given without one, with the schedules' own check.
_ANY_CRON = "* * * * *"


def valid_name(value: str) -> None:
    if not NAME.fullmatch(value):
        raise ValidationError(f"must be {NAME_RULE}")


def _description() -> fields.String:
    return fields.String(
        allow_none=True, validate=[validate.Length(max=MAX_DESCRIPTION), printable]
    )


# -- input -------------------------------------------------------------------------------


class ModelInputSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=valid_name)
    description = _description()


class ModelPatchSchema(ModelInputSchema):
    name = fields.String(validate=valid_name)


class FreshnessSchema(Schema):
    """At any moment the asset holds all root data that arrived more than
    ``maximumLagMinutes`` ago (with a cron: by each of its ticks, as of the tick less the
    lag)."""

    class Meta:
        unknown = RAISE

    maximumLagMinutes = fields.Float(
        required=True,
        allow_nan=False,
        validate=validate.Range(min=0, min_inclusive=False, max=366 * 24 * 60),
    )
    cronSchedule = fields.String(validate=validate.Length(1, 255))
    timezone = fields.String(validate=validate.Length(1, 64))


class ObserveSchema(Schema):
    """How jobchain observes a source's data version by itself."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(["FILE_MTIME", "FILE_SHA256"]))
    path = fields.String(required=True, validate=[validate.Length(1, 1024), printable])
    intervalSeconds = fields.Float(
        load_default=60.0, allow_nan=False, validate=validate.Range(min=0.1, max=86400)
    )


class AssetInputSchema(Schema):
    """An asset; ``job`` is checked as ``POST /jobs`` checks a payload (see check_asset)."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=valid_name)
    kind = fields.String(
        load_default="job",
        validate=validate.OneOf(["job", "source"]),
        metadata={"description": "job: refreshed by its job; source: observed, not run"},
    )
    job: fields.Field = fields.Raw(
        allow_none=True,
        metadata={"description": "one ChainedJobInfo node, without nextJobs (not for a source)"},
    )
    automation = fields.String(
        load_default="off",
        validate=validate.OneOf(["off", "reconcile"]),
        metadata={"description": "reconcile: the reconciliation loop keeps it up to date"},
    )
    freshness = fields.Nested(FreshnessSchema, allow_none=True, load_default=None)
    codeVersion = fields.String(
        allow_none=True, load_default=None, validate=[validate.Length(1, 255), printable]
    )
    observe = fields.Nested(ObserveSchema, allow_none=True, load_default=None)
    cron = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(1, 255),
        metadata={"description": "5-field crontab, as schedules take it; null: no own cron"},
    )
    timezone = fields.String(load_default="UTC", metadata={"description": "IANA time zone"})
    description = _description()


class AssetPatchSchema(AssetInputSchema):
    class Meta:
        unknown = RAISE
        exclude = ("kind",)  # a job stays a job, a source a source

    name = fields.String(validate=valid_name)
    job = fields.Raw(metadata={"description": "one ChainedJobInfo node, without nextJobs"})
    cron = fields.String(allow_none=True, validate=validate.Length(1, 255))
    timezone = fields.String()
    automation = fields.String(validate=validate.OneOf(["off", "reconcile"]))
    freshness = fields.Nested(FreshnessSchema, allow_none=True)
    codeVersion = fields.String(allow_none=True, validate=[validate.Length(1, 255), printable])
    observe = fields.Nested(ObserveSchema, allow_none=True)


class AssetInputDocSchema(AssetInputSchema):
    job = fields.Nested(
        ChainedJobInfoSchema,
        allow_none=True,
        metadata={"description": "required for a job asset; a source has none"},
    )


class DependencyInputSchema(Schema):
    """``{"upstreamId", "downstreamId"}``; ``upstream_id`` and ``downstream_id`` too."""

    class Meta:
        unknown = RAISE

    upstreamId = StrictInteger(required=True, validate=validate.Range(min=1))
    downstreamId = StrictInteger(required=True, validate=validate.Range(min=1))

    @pre_load
    def _snake_case(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            return data
        renamed = dict(data)
        for snake, camel in (("upstream_id", "upstreamId"), ("downstream_id", "downstreamId")):
            if snake in renamed:
                if camel in renamed:
                    raise ValidationError(f"give {camel} or {snake}, not both", snake)
                renamed[camel] = renamed.pop(snake)
        return renamed


class GraphDependencySchema(Schema):
    class Meta:
        unknown = RAISE

    upstream = fields.String(required=True, validate=valid_name)
    downstream = fields.String(required=True, validate=valid_name)


class GraphAssetSchema(AssetInputSchema):
    """An asset of a graph file: its name is its key."""


class GraphInputSchema(Schema):
    """PUT /graph: the assets and dependencies are checked one by one (check_graph)."""

    class Meta:
        unknown = RAISE

    assets = fields.List(fields.Raw(), required=True)
    dependencies = fields.List(fields.Raw(), load_default=list)


class GraphInputDocSchema(GraphInputSchema):
    assets = fields.List(fields.Nested(AssetInputDocSchema), required=True)
    dependencies = fields.List(fields.Nested(GraphDependencySchema), load_default=list)


# -- output ------------------------------------------------------------------------------


class ModelSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    assetCount = fields.Integer(attribute="asset_count")


class ModelListSchema(Schema):
    items = fields.List(fields.Nested(ModelSchema))


class AssetRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class RefreshSchema(Schema):
    jobId = fields.Integer(attribute="job_id")
    status = fields.String(allow_none=True, metadata={"description": "null once purged"})
    startedAt = EpochDateTime(attribute="started_at", allow_none=True)
    finishedAt = EpochDateTime(attribute="finished_at", allow_none=True)


class CauseSchema(Schema):
    cause = fields.String(metadata={"description": "CODE, DATA or DEPENDENCIES"})
    asset = fields.String(metadata={"description": "the asset with the cause (root cause)"})


class AssetSchema(Schema):
    id = fields.Integer()
    modelId = fields.Integer(attribute="model_id")
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    job = fields.Raw(allow_none=True, metadata={"description": "one ChainedJobInfo node"})
    automation = fields.String()
    freshness = fields.Raw(allow_none=True)
    codeVersion = fields.String(attribute="code_version", allow_none=True)
    observe = fields.Raw(allow_none=True)
    status = fields.String(metadata={"description": "MISSING, STALE or FRESH"})
    causes = fields.List(fields.Nested(CauseSchema))
    dataVersion = fields.String(attribute="data_version", allow_none=True)
    currentDataTime = EpochDateTime(attribute="current_data_time", allow_none=True)
    late = fields.Boolean()
    lateBy = fields.Float(attribute="late_by", metadata={"description": "seconds"})
    nextDeadline = EpochDateTime(attribute="next_deadline", allow_none=True)
    held = fields.Boolean()
    heldError = fields.String(attribute="held_error", allow_none=True)
    cron = fields.String(allow_none=True)
    timezone = fields.String()
    dependsOn = fields.List(fields.Nested(AssetRefSchema), attribute="depends_on")
    requiredBy = fields.List(fields.Nested(AssetRefSchema), attribute="required_by")
    lastRefresh = fields.Nested(RefreshSchema, attribute="last_refresh", allow_none=True)


class AssetListSchema(Schema):
    items = fields.List(fields.Nested(AssetSchema))


class DependencySchema(Schema):
    id = fields.Integer()
    modelId = fields.Integer(attribute="model_id")
    upstreamId = fields.Integer(attribute="upstream_id")
    downstreamId = fields.Integer(attribute="downstream_id")
    upstream = fields.String(metadata={"description": "the upstream asset's name"})
    downstream = fields.String(metadata={"description": "the downstream asset's name"})


class DependencyListSchema(Schema):
    items = fields.List(fields.Nested(DependencySchema))


class OrderSchema(Schema):
    order = fields.List(fields.String(), metadata={"description": "Kahn's, ties by name"})
    levels = fields.List(
        fields.List(fields.String()), metadata={"description": "by longest path from a root"}
    )


class GraphAssetOutSchema(Schema):
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    job = fields.Raw(allow_none=True, metadata={"description": "one ChainedJobInfo node"})
    cron = fields.String(allow_none=True)
    timezone = fields.String()
    automation = fields.String()
    freshness = fields.Raw(allow_none=True)
    codeVersion = fields.String(attribute="code_version", allow_none=True)
    observe = fields.Raw(allow_none=True)


class GraphSchema(Schema):
    """A model's graph as a file (what PUT takes and GET gives)."""

    assets = fields.List(fields.Nested(GraphAssetOutSchema))
    dependencies = fields.List(fields.Nested(GraphDependencySchema))


# -- checks ------------------------------------------------------------------------------


def load(schema: Schema, body: Any, code: str, what: str) -> dict[str, Any]:
    """``body`` loaded by ``schema``, or 400 ``code`` naming every bad field."""
    try:
        data: dict[str, Any] = schema.load(unwrap(body))
    except ValidationError as exc:
        raise ApiError(400, code, f"invalid {what}", flatten(exc.messages)) from None
    return data


def check_asset(data: dict[str, Any], path: str = "") -> dict[str, list[str]]:
    """Problems of a loaded asset (or of the fields a PATCH changes), by path: its job as
    ``POST /jobs`` checks it but a single node, its cron and time zone as schedules do."""
    prefix = f"{path}." if path else ""
    found: dict[str, list[str]] = _kind_problems(data, prefix)
    policy = data.get("freshness") or {}
    if policy.get("cronSchedule") or policy.get("timezone"):
        try:
            cron_schedule(policy.get("cronSchedule") or _ANY_CRON, policy.get("timezone", "UTC"))
        except InvalidSchedule as exc:
            names = {"cron": "cronSchedule", "timezone": "timezone"}
            for field, m in exc.details.items():
                found[f"{prefix}freshness.{names.get(field, field)}"] = m
    if data.get("job") is not None:
        found.update(_job_problems(data["job"], f"{prefix}job"))
    if "cron" in data or "timezone" in data:
        cron = data.get("cron")
        try:
            cron_schedule(cron or _ANY_CRON, data.get("timezone", "UTC"))
        except InvalidSchedule as exc:
            found.update(
                {
                    f"{prefix}{field}": m
                    for field, m in exc.details.items()
                    if cron or field != "cron"
                }
            )
    return found


def _kind_problems(data: dict[str, Any], prefix: str) -> dict[str, list[str]]:
    """A source has no job, code version, cron or automation; a job asset no observer.
    (For a PATCH, ``data`` holds the stored asset's fields under the change.)"""
    found: dict[str, list[str]] = {}
    if data.get("kind", "job") == "source":
        for field in ("job", "codeVersion", "cron", "freshness"):
            if data.get(field) is not None:
                found[f"{prefix}{field}"] = ["not for a source asset: it is observed, not run"]
        if data.get("automation", "off") != "off":
            found[f"{prefix}automation"] = ["a source asset is observed, not reconciled"]
    else:
        if "job" in data and data["job"] is None:
            found[f"{prefix}job"] = ["Missing data for required field."]
        if data.get("observe") is not None:
            found[f"{prefix}observe"] = ["only a source asset is observed"]
    return found


def _job_problems(job: Any, path: str) -> dict[str, list[str]]:
    job = unwrap(job)
    if isinstance(job, dict) and job.get("nextJobs"):
        return {f"{path}.nextJobs": ["not allowed: the graph's dependencies decide what follows"]}
    try:
        checked = SubmitService.for_runtime(runtime()).check(job)
    except PayloadError as exc:
        return {(path if p == "$" else f"{path}.{p}"): m for p, m in exc.details.items()}
    if checked.root.job_type in JOIN_TYPES:
        return {f"{path}.targetObject": ["a JOIN is not an asset: dependencies are the joins"]}
    return {}
