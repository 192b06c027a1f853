"""The schedules API under /api/v1/schedules: cron schedules that submit a job tree.

A schedule is checked as strictly as a submission when it is created or changed: its cron
expression and time zone, and its job exactly as ``POST /jobs`` checks one (paths of the
job's problems start with ``job``). The job is checked again at each fire.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.api.errors import ApiError
from app.api.schemas import EpochDateTime
from app.api.shared import MAX_ID, json_body, no_controls, runtime
from app.domain.cron import InvalidSchedule, cron_schedule
from app.domain.payload import ChainedJobInfoSchema, PayloadError, StrictBoolean, unwrap
from app.runner.schedule_loop import next_fire_after
from app.services.submit import SubmitService
from app.store import schedules
from app.store.database import now

schedules_api = Blueprint("schedules_api", __name__, url_prefix="/api/v1")

UPCOMING = 5


class ScheduleInputSchema(Schema):
    """POST body. ``job`` is checked by the submit service (with node paths)."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(1, 255), no_controls])
    cron = fields.String(
        required=True,
        validate=validate.Length(1, 255),
        metadata={"description": "5-field crontab: minute hour day-of-month month day-of-week"},
    )
    timezone = fields.String(
        load_default="UTC", metadata={"description": "IANA time zone the cron is read in"}
    )
    job: fields.Field = fields.Raw(required=True, metadata={"description": "a ChainedJobInfo"})
    enabled = StrictBoolean(load_default=True)


class SchedulePatchSchema(ScheduleInputSchema):
    """PATCH body: any of the fields; those left out keep their value."""

    name = fields.String(validate=[validate.Length(1, 255), no_controls])
    cron = fields.String(validate=validate.Length(1, 255))
    timezone = fields.String()
    job = fields.Raw(metadata={"description": "a ChainedJobInfo"})
    enabled = StrictBoolean()


class ScheduleInputDocSchema(ScheduleInputSchema):
    """The POST body as documented in OpenAPI."""

    job = fields.Nested(ChainedJobInfoSchema, required=True)


class ScheduleFireSchema(Schema):
    fireTime = EpochDateTime(attribute="fire_time")
    firedAt = EpochDateTime(attribute="fired_at")
    rootJobId = fields.Integer(attribute="root_job_id", allow_none=True)
    status = fields.String(allow_none=True, metadata={"description": "the root job's status"})
    message = fields.String(allow_none=True, metadata={"description": "why no chain started"})


class ScheduleSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    cron = fields.String()
    timezone = fields.String()
    enabled = fields.Boolean()
    job = fields.Raw(attribute="payload", metadata={"description": "a ChainedJobInfo"})
    nextFireAt = EpochDateTime(attribute="next_fire_at", allow_none=True)
    nextFireTimes = fields.List(EpochDateTime(), attribute="next_fire_times")
    lastChains = fields.List(fields.Nested(ScheduleFireSchema), attribute="fires")
    createdAt = EpochDateTime(attribute="created_at")
    updatedAt = EpochDateTime(attribute="updated_at")


class ScheduleListSchema(Schema):
    items = fields.List(fields.Nested(ScheduleSchema))


@schedules_api.post("/schedules")
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    """Create a schedule: its job is submitted at every fire time.
    ---
    post:
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: "#/components/schemas/ScheduleInputBody"}}}
      responses:
        201: {description: The schedule, content: {application/json: {schema: Schedule}}}
        400: {description: Invalid schedule, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    rt = runtime()
    data = _load(ScheduleInputSchema())
    _check(data["cron"], data["timezone"], data["job"])
    next_fire = next_fire_after(now())
    try:
        schedule_id = schedules.create(
            rt.db,
            name=data["name"],
            cron=data["cron"],
            timezone=data["timezone"],
            payload=unwrap(data["job"]),
            enabled=data["enabled"],
            next_fire_at=next_fire(data["cron"], data["timezone"]),
        )
    except schedules.NameTaken:
        raise _name_taken(data["name"]) from None
    location = {"Location": f"/api/v1/schedules/{schedule_id}"}
    return jsonify(_dump(_schedule_or_404(schedule_id))), 201, location


@schedules_api.get("/schedules")
def list_schedules() -> Response:
    """Every schedule, with its next fire times and latest chains.
    ---
    get:
      responses:
        200: {description: The schedules, content: {application/json: {schema: ScheduleList}}}
    """
    found = schedules.list_schedules(runtime().db)
    return jsonify({"items": [_dump(s) for s in found]})


@schedules_api.get("/schedules/<int:schedule_id>")
def get_schedule(schedule_id: int) -> Response:
    """A schedule with its next fire times and latest chains.
    ---
    get:
      parameters:
      - {in: path, name: schedule_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The schedule, content: {application/json: {schema: Schedule}}}
        404: {description: No such schedule, content: {application/json: {schema: Error}}}
    """
    return jsonify(_dump(_schedule_or_404(schedule_id)))


@schedules_api.patch("/schedules/<int:schedule_id>")
def update_schedule(schedule_id: int) -> Response:
    """Pause or resume a schedule, or change its name, timing or job.

    Resuming, or a new cron or time zone, computes the next fire time from now.
    ---
    patch:
      parameters:
      - {in: path, name: schedule_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: "#/components/schemas/SchedulePatchBody"}}}
      responses:
        200: {description: The schedule, content: {application/json: {schema: Schedule}}}
        400: {description: Invalid change, content: {application/json: {schema: Error}}}
        404: {description: No such schedule, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    rt = runtime()
    changes = _load(SchedulePatchSchema())
    current = _schedule_or_404(schedule_id)
    _check(
        changes.get("cron", current["cron"]),
        changes.get("timezone", current["timezone"]),
        changes.get("job"),
    )
    if "job" in changes:
        changes["payload"] = unwrap(changes.pop("job"))
    try:
        found = schedules.update_schedule(rt.db, schedule_id, changes, next_fire_after(now()))
    except schedules.NameTaken:
        raise _name_taken(changes["name"]) from None
    if not found:
        raise _not_found(schedule_id)
    return jsonify(_dump(_schedule_or_404(schedule_id)))


@schedules_api.delete("/schedules/<int:schedule_id>")
def delete_schedule(schedule_id: int) -> tuple[str, int]:
    """Delete a schedule; the chains it started are kept.
    ---
    delete:
      parameters:
      - {in: path, name: schedule_id, required: true, schema: {type: integer}}
      responses:
        204: {description: Deleted}
        404: {description: No such schedule, content: {application/json: {schema: Error}}}
    """
    if schedule_id > MAX_ID or not schedules.delete_schedule(runtime().db, schedule_id):
        raise _not_found(schedule_id)
    return "", 204


def _load(schema: Schema) -> dict[str, Any]:
    body = unwrap(json_body())
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_schedule", "invalid schedule", exc.normalized_messages()
        ) from None
    return data


def _check(cron: str, timezone: str, job: Any | None) -> None:
    """Reject a bad timing and a bad job in one answer, naming every bad field."""
    details: dict[str, list[str]] = {}
    try:
        cron_schedule(cron, timezone)
    except InvalidSchedule as exc:
        details.update(exc.details)
    if job is not None:
        try:
            SubmitService.for_runtime(runtime()).check(job)
        except PayloadError as exc:
            details.update(
                {("job" if path == "$" else f"job.{path}"): m for path, m in exc.details.items()}
            )
    if details:
        raise ApiError(400, "invalid_schedule", "invalid schedule", details)


def _dump(schedule: dict[str, Any]) -> dict[str, Any]:
    try:
        timing = cron_schedule(schedule["cron"], schedule["timezone"])
        upcoming = timing.upcoming(schedule["next_fire_at"], now(), UPCOMING)
    except InvalidSchedule:  # stored valid; a time zone may have left tzdata since
        upcoming = []
    dumped: dict[str, Any] = ScheduleSchema().dump({**schedule, "next_fire_times": upcoming})
    return dumped


def _schedule_or_404(schedule_id: int) -> dict[str, Any]:
    found = schedules.get_schedule(runtime().db, schedule_id) if schedule_id <= MAX_ID else None
    if found is None:
        raise _not_found(schedule_id)
    return found


def _not_found(schedule_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no schedule {schedule_id}")


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "name_taken", f"a schedule named {name!r} already exists")
