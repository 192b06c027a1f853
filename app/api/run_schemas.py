"""Shapes of the runs API (``runs.py``): a run request, a run with its assets, the batch
task log, and an asset job's run as the job view shows it."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.api.graph_schemas import NAME_RULE, valid_name
from app.api.schemas import EpochDateTime, JobSchema
from app.api.shared import printable
from app.domain.payload import StrictBoolean
from app.domain.runs import GENERATED_BATCH
from app.store.run_reads import RUN_STATES

MAX_RUN_ASSETS = 10_000


def _batch(value: str) -> None:
    printable(value)
    if GENERATED_BATCH.fullmatch(value):
        raise ValidationError("run-<number> is reserved for the batches runs generate")


class RunInputSchema(Schema):
    class Meta:
        unknown = RAISE

    assets = fields.List(
        fields.String(validate=valid_name),
        validate=validate.Length(min=1, max=MAX_RUN_ASSETS),
        metadata={"description": f"asset names ({NAME_RULE}); default: all, or the roots"},
    )
    batch = fields.String(validate=[validate.Length(min=1, max=255), _batch])
    downstream = StrictBoolean(load_default=True)
    force = StrictBoolean(load_default=False)


class RunAssetSchema(Schema):
    name = fields.String(attribute="asset")
    jobId = fields.Integer(attribute="job_id")
    status = fields.String(allow_none=True)
    startedAt = EpochDateTime(attribute="started_at", allow_none=True)
    finishedAt = EpochDateTime(attribute="finished_at", allow_none=True)
    message = fields.String(allow_none=True)
    waitingFor = fields.String(
        attribute="waiting_for",
        allow_none=True,
        metadata={"example": "waiting for 'load_expenses' in batch 2024-03"},
    )
    ownRun = fields.Boolean(
        attribute="own", metadata={"description": "false: an earlier run of the batch made it"}
    )


class RunSchema(Schema):
    id = fields.Integer()
    modelId = fields.Integer(attribute="model_id")
    batch = fields.String()
    state = fields.String(metadata={"enum": list(RUN_STATES)})
    named = fields.List(fields.String())
    downstream = fields.Boolean()
    force = fields.Boolean()
    rootJobId = fields.Integer(attribute="root_job_id", allow_none=True)
    fireTime = EpochDateTime(attribute="fire_time", allow_none=True)
    createdAt = EpochDateTime(attribute="created_at")
    assets = fields.List(fields.Nested(RunAssetSchema))


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSchema))


class RunListArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    batch = fields.String(validate=[validate.Length(min=1, max=255), printable])
    state = fields.String(validate=validate.OneOf(RUN_STATES))


class TaskSchema(Schema):
    asset = fields.String()
    status = fields.String(
        attribute="task_status", metadata={"enum": ["NEW", "PROCESSING", "SUCCESS", "ERROR"]}
    )
    jobId = fields.Integer(attribute="job_id")
    jobStatus = fields.String(attribute="status", allow_none=True)
    runId = fields.Integer(attribute="run_id")
    startedAt = EpochDateTime(attribute="started_at", allow_none=True)
    finishedAt = EpochDateTime(attribute="finished_at", allow_none=True)


class BatchSchema(Schema):
    modelId = fields.Integer()
    batch = fields.String()
    tasks = fields.List(fields.Nested(TaskSchema))


class JobAssetSchema(Schema):
    modelId = fields.Integer(attribute="model_id")
    model = fields.String(allow_none=True)
    asset = fields.String()
    runId = fields.Integer(attribute="run_id")
    batch = fields.String()
    reason = fields.String(
        allow_none=True, metadata={"description": "why automation ran it; null: by hand or cron"}
    )


class AssetJobSchema(JobSchema):
    """A job; ``asset`` names the model, asset, run and batch when a run refreshes it."""

    asset = fields.Nested(JobAssetSchema, allow_none=True)
