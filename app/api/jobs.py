"""The JSON API under /api/v1: submit, inspect, cancel and retry jobs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from app.api.errors import ApiError
from app.api.run_schemas import AssetJobSchema
from app.api.schemas import JobEventSchema, JobLogSchema, JobSchema, JobTypeSchema, dump_tree
from app.api.shared import MAX_ID, job_not_found, json_body, no_controls, runtime, valid_job_id
from app.domain.history import mark_internal
from app.domain.payload import PayloadError
from app.domain.statuses import Status
from app.services.submit import IdempotentRequest, RoleDenied, SubmitService
from app.store import actions, idempotency, queries, run_reads
from app.store.join_setup import JoinConflict

jobs_api = Blueprint("api", __name__, url_prefix="/api/v1")


class ListArgsSchema(Schema):
    """GET /jobs query parameters; an unknown one is a 400, not a silently ignored typo."""

    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    targetObject = fields.String(validate=[validate.Length(max=255), no_controls])
    jobType = fields.String(validate=[validate.Length(max=64), no_controls])
    rootId = fields.Integer(validate=validate.Range(1, MAX_ID))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = fields.Integer(validate=validate.Range(1, MAX_ID))


@jobs_api.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    """Submit a ChainedJobInfo tree.
    ---
    post:
      summary: Submit a job with its nested next jobs
      parameters:
      - in: header
        name: Idempotency-Key
        required: false
        schema: {type: string, minLength: 1, maxLength: 255}
        description: >-
          Retry-safe submission: the same key with the same body returns the job stored
          first (200) instead of a second chain, for idempotency_ttl_seconds (24 h)
      requestBody:
        required: true
        description: 'A ChainedJobInfo, bare or wrapped as {"data": ChainedJobInfo}'
        content:
          application/json:
            schema: {$ref: "#/components/schemas/ChainedJobInfoBody"}
      responses:
        200:
          description: The root job stored earlier with this Idempotency-Key and body
          content:
            application/json:
              schema: Job
        201:
          description: The stored root job
          content:
            application/json:
              schema: Job
        400:
          description: Invalid payload or Idempotency-Key
          content:
            application/json:
              schema: Error
        409:
          description: A JOIN conflicts with one already stored for its batch
          content:
            application/json:
              schema: Error
        413:
          description: Body too large
          content:
            application/json:
              schema: Error
        422:
          description: The Idempotency-Key was used with a different body
          content:
            application/json:
              schema: Error
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None and not idempotency.valid_key(key):
        message = "Idempotency-Key must be 1 to 255 printable characters"
        raise ApiError(400, "invalid_idempotency_key", message)
    body = json_body()
    try:
        submitted = SubmitService.for_runtime(runtime()).submit(
            body,
            g.api_token.role,
            None if key is None else IdempotentRequest(key, body),
        )
    except RoleDenied as exc:
        raise ApiError(403, "insufficient_role", exc.message, exc.details) from None
    except PayloadError as exc:
        raise ApiError(exc.status, "invalid_payload", exc.message, exc.details) from None
    except JoinConflict as exc:
        raise ApiError(409, "join_conflict", str(exc)) from None
    except idempotency.KeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from None
    job = _job_or_404(submitted.root_id)
    headers = {"Location": f"/api/v1/jobs/{submitted.root_id}"}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(JobSchema().dump(job)), 200 if submitted.replayed else 201, headers


@jobs_api.get("/jobs")
def list_jobs() -> Response:
    """List jobs, newest first.
    ---
    get:
      summary: List jobs (keyset-paginated; pass nextCursor back as cursor)
      parameters:
      - in: query
        schema: ListArgsSchema
      responses:
        200:
          description: One page of jobs
          content:
            application/json:
              schema: JobPage
        400:
          description: Invalid query parameters
          content:
            application/json:
              schema: Error
    """
    try:
        args = ListArgsSchema().load(request.args)
    except ValidationError as exc:
        details = exc.normalized_messages()
        raise ApiError(400, "invalid_query", "invalid query parameters", details) from None
    where = queries.JobFilter(
        status=args.get("status"),
        target_object=args.get("targetObject"),
        root_id=args.get("rootId"),
        job_type=args.get("jobType"),
    )
    items, next_id = queries.list_jobs(runtime().db, where, args["limit"], args.get("cursor"))
    return jsonify(
        {
            "items": JobSchema(many=True).dump(items),
            "nextCursor": str(next_id) if next_id is not None else None,
        }
    )


@jobs_api.get("/jobs/<int:job_id>")
def get_job(job_id: int) -> Response:
    """A job.
    ---
    get:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200:
          description: The job; asset names the model, asset, run and batch it refreshes for
          content: {application/json: {schema: AssetJob}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
    """
    job = _job_or_404(job_id)
    job["asset"] = run_reads.job_asset(runtime().db, job_id)
    return jsonify(AssetJobSchema().dump(job))


@jobs_api.get("/jobs/<int:job_id>/tree")
def get_tree(job_id: int) -> Response:
    """A job with all its descendants nested under nextJobs.
    ---
    get:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The job tree, content: {application/json: {schema: JobTree}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
    """
    tree = queries.get_tree(runtime().db, valid_job_id(job_id))
    if tree is None:
        raise job_not_found(job_id)
    return jsonify(dump_tree(tree))


@jobs_api.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int) -> Response:
    """Cancel a job and its not-yet-started descendants; a running job is asked to stop.
    ---
    post:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The job after the cancel, content: {application/json: {schema: Job}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
        409: {description: Already ended, content: {application/json: {schema: Error}}}
    """
    rt = runtime()
    status = _guarded(lambda: actions.cancel(rt.db, valid_job_id(job_id)))
    if status == Status.PROCESSING and rt.pool is not None:
        rt.pool.request_abort(job_id)
    return jsonify(JobSchema().dump(_job_or_404(job_id)))


@jobs_api.post("/jobs/<int:job_id>/retry")
def retry_job(job_id: int) -> Response:
    """Run a FAILED or CANCELLED job again; what it blocked waits again.
    ---
    post:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The job waiting again, content: {application/json: {schema: Job}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
        409: {description: Not FAILED or CANCELLED, content: {application/json: {schema: Error}}}
    """
    _guarded(lambda: actions.retry(runtime().db, valid_job_id(job_id)))
    return jsonify(JobSchema().dump(_job_or_404(job_id)))


@jobs_api.get("/jobs/<int:job_id>/events")
def job_events(job_id: int) -> Response:
    """Every status change of the job, oldest first; ``internal`` marks a hand-back of a
    claimed job no worker started and the claim it undid (left out of the status history).
    ---
    get:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The events, content: {application/json: {schema: JobEventList}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
    """
    events = queries.get_events(runtime().db, valid_job_id(job_id))
    if events is None:
        raise job_not_found(job_id)
    return jsonify({"items": JobEventSchema(many=True).dump(mark_internal(events))})


@jobs_api.get("/jobs/<int:job_id>/log")
def job_log(job_id: int) -> Response:
    """The bounded tail of the job's log.
    ---
    get:
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The log tail, content: {application/json: {schema: JobLog}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
    """
    entry = queries.get_log(runtime().db, valid_job_id(job_id))
    if entry is None:
        raise job_not_found(job_id)
    return jsonify(JobLogSchema().dump(entry))


@jobs_api.get("/job-types")
def job_types() -> Response:
    """Registered job types.
    ---
    get:
      responses:
        200: {description: The job types, content: {application/json: {schema: JobTypeList}}}
    """
    return jsonify({"items": JobTypeSchema(many=True).dump(runtime().registry.all())})


def _job_or_404(job_id: int) -> dict[str, Any]:
    job = queries.get_job(runtime().db, valid_job_id(job_id))
    if job is None:
        raise job_not_found(job_id)
    return job


def _guarded(action: Any) -> Any:
    try:
        return action()
    except actions.NotFound as exc:
        raise job_not_found(int(str(exc))) from None
    except actions.Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
