"""The joins API under /api/v1/joins: who arrived, what the join decided, what it started."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from app.api.errors import ApiError
from app.api.schemas import EpochDateTime
from app.api.shared import MAX_ID, no_controls, runtime
from app.store import join_reads

joins_api = Blueprint("joins_api", __name__, url_prefix="/api/v1")


class JoinArrivalSchema(Schema):
    jobId = fields.Integer(attribute="job_id")
    parentJobId = fields.Integer(attribute="parent_job_id", allow_none=True)
    parentOutcome = fields.String(attribute="parent_outcome")
    at = EpochDateTime()


class JoinSchema(Schema):
    id = fields.Integer()
    key = fields.String()
    batch = fields.String(allow_none=True)
    rootId = fields.Integer(attribute="root_id", allow_none=True)
    trigger = fields.String()
    expected = fields.Integer()
    arrived = fields.Function(lambda join: len(join["arrivals"]))
    state = fields.String()
    message = fields.String(allow_none=True)
    arrivals = fields.List(fields.Nested(JoinArrivalSchema))
    nodeJobIds = fields.List(fields.Integer(), attribute="node_job_ids")
    ownerJobId = fields.Integer(attribute="owner_job_id", allow_none=True)
    nextJobIds = fields.List(fields.Integer(), attribute="next_job_ids")
    startedJobIds = fields.List(fields.Integer(), attribute="started_job_ids")
    decidedByJobId = fields.Integer(attribute="decided_by_job_id", allow_none=True)
    deadline = EpochDateTime(allow_none=True)
    createdAt = EpochDateTime(attribute="created_at")
    decidedAt = EpochDateTime(attribute="decided_at", allow_none=True)


class JoinListArgsSchema(Schema):
    key = fields.String(validate=[validate.Length(max=255), no_controls])
    batch = fields.String(validate=[validate.Length(max=255), no_controls])
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


@joins_api.get("/joins")
def list_joins() -> Response:
    """Joins, newest first, optionally by key and batch.
    ---
    get:
      parameters:
      - in: query
        schema: JoinListArgsSchema
      responses:
        200: {description: "{items: [Join]}"}
        400: {content: {application/json: {schema: Error}}}
    """
    try:
        args = JoinListArgsSchema().load(request.args)
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_query", "invalid query parameters", exc.normalized_messages()
        ) from None
    found = join_reads.list_joins(runtime().db, args.get("key"), args.get("batch"), args["limit"])
    return jsonify({"items": JoinSchema(many=True).dump(found)})


@joins_api.get("/joins/<int:join_id>")
def get_join(join_id: int) -> Response:
    """A join with its arrivals and the jobs it started.
    ---
    get:
      parameters:
      - {in: path, name: join_id, required: true, schema: {type: integer}}
      responses:
        200: {content: {application/json: {schema: Join}}}
        404: {content: {application/json: {schema: Error}}}
    """
    join = join_reads.get_join(runtime().db, join_id) if join_id <= MAX_ID else None
    if join is None:
        raise ApiError(404, "not_found", f"no join {join_id}")
    return jsonify(JoinSchema().dump(join))
