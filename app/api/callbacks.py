"""Callbacks from integration systems: POST /api/v1/jobs/{id}/callback ends EXTERNAL jobs.

A callback is trusted only with a valid HMAC signature (``app/security/signatures.py``)
made with one of ``settings.callback_secrets``; without any configured secret, callbacks are
refused with 403 (a permanent configuration problem of this service, so no client retries it;
an unknown job is a 404 first). The signature
is checked on the raw bytes before anything else, so an unsigned caller learns nothing, not even
whether the job exists.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.api.errors import ApiError, error_response
from app.api.schemas import JobSchema
from app.api.shared import MAX_ID, job_not_found, parse_json, runtime, valid_job_id
from app.domain.outcome import RetryPolicy
from app.domain.payload import StrictInteger, StrictNumber, flatten
from app.domain.statuses import Status
from app.runtime import Runtime
from app.security.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from app.store import actions, external, queries
from app.store.database import now
from jobs.context import result_problem
from jobs.external import CALLBACK_BASE

integration_api = Blueprint("integration_api", __name__, url_prefix="/api/v1")

MAX_MESSAGE_LENGTH = 10_000


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")


class CallbackSchema(Schema):
    """A callback body: a final ``status`` ends the attempt; without one, ``progress`` and
    ``message`` only report on a running job."""

    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf([Status.FINISHED.value, Status.FAILED.value]))
    attempt = StrictInteger(validate=validate.Range(1, 2**31 - 1))
    message = fields.String(validate=[validate.Length(max=MAX_MESSAGE_LENGTH), _no_nul])
    result = fields.Raw(allow_none=True)
    progress = StrictNumber(validate=validate.Range(0, 100))
    jobId = StrictInteger(
        validate=validate.Range(1, MAX_ID),
        metadata={"description": "required with a final status: binds the body to this job"},
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        if not {"status", "progress", "message"} & set(data):
            raise ValidationError("give a final status, or progress and/or message")
        if "status" in data:
            # They bind a signed final callback to one job and one attempt, so resending it
            # can never end a later attempt, nor another job.
            missing = {"attempt", "jobId"} - set(data)
            if missing:
                raise ValidationError(
                    {name: ["required with a final status"] for name in sorted(missing)}
                )
        if "result" in data and "status" not in data:
            raise ValidationError("a result needs a final status", "result")
        if "result" in data and (problem := result_problem(data["result"])):
            raise ValidationError(problem, "result")


@integration_api.record
def _configure_callback_base(state: BlueprintSetupState) -> None:
    """EXTERNAL jobs of this process tell integration systems to call back here."""
    rt: Runtime = state.app.extensions["jobchain"]
    CALLBACK_BASE.configure(rt.settings.public_url)


@integration_api.post("/jobs/<int:job_id>/callback")
def job_callback(job_id: int) -> Response | tuple[Response, int]:
    """An integration system reports on an EXTERNAL job (HMAC-signed).
    ---
    post:
      summary: Report progress or the end of an EXTERNAL job
      description: >-
        Signed with HMAC-SHA256 over "<X-Jobchain-Timestamp>.<raw body>" with a shared
        secret (callback_secrets); timestamps more than 300 s off are refused. A final status
        ends the attempt and the chain goes on; the same final callback again is a no-op.
      parameters:
      - {in: path, name: job_id, required: true, schema: {type: integer}}
      - {in: header, name: X-Jobchain-Timestamp, required: true, schema: {type: string}}
      - in: header
        name: X-Jobchain-Signature
        required: true
        schema: {type: string, pattern: "^sha256=[0-9a-f]{64}$"}
      requestBody:
        required: true
        content:
          application/json:
            schema: CallbackSchema
      responses:
        200: {description: The job after the callback, content: {application/json: {schema: Job}}}
        400: {description: Invalid body, content: {application/json: {schema: Error}}}
        401: {description: Missing or bad signature, content: {application/json: {schema: Error}}}
        404: {description: No such job, content: {application/json: {schema: Error}}}
        409:
          description: Not an EXTERNAL job, not running, another attempt, or already ended
          content: {application/json: {schema: Error}}
        403:
          description: No callback secret is configured, so no callback is accepted
          content: {application/json: {schema: Error}}
    """
    rt = runtime()
    if not rt.settings.callback_secrets:
        # Permanent until someone configures a secret: a 4xx, so no client retries it; an
        # unknown job is still a 404 first.
        if job_id > MAX_ID or queries.get_job(rt.db, job_id) is None:
            raise job_not_found(job_id)
        raise ApiError(
            403,
            "callbacks_not_configured",
            "callbacks are refused: no callback secret is configured (JOBCHAIN_CALLBACK_SECRETS)",
        )
    raw = request.get_data(cache=False)
    try:
        verify(
            rt.settings.callback_secrets,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            raw,
            now(),
        )
    except SignatureError as exc:
        response, status = error_response(401, "invalid_signature", str(exc))
        response.headers["WWW-Authenticate"] = 'HMAC-SHA256 realm="jobchain-callbacks"'
        return response, status
    valid_job_id(job_id)  # no larger id can exist, whatever the body says
    data = _load(raw)
    if data.get("jobId", job_id) != job_id:
        details = {"jobId": [f"is {data['jobId']}, but the URL names job {job_id}"]}
        raise ApiError(400, "invalid_callback", "invalid callback", details)
    callback = external.Callback(
        status=Status(data["status"]) if "status" in data else None,
        attempt=data.get("attempt"),
        message=data.get("message"),
        result=data.get("result"),
        progress=data.get("progress"),
    )
    retry = RetryPolicy(rt.settings.retry_base_seconds, rt.settings.retry_max_seconds)
    try:
        external.apply_callback(rt.db, job_id, callback, retry)
    except actions.NotFound:
        raise job_not_found(job_id) from None
    except actions.Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    job = queries.get_job(rt.db, job_id)
    if job is None:
        raise job_not_found(job_id)
    return jsonify(JobSchema().dump(job))


def _load(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_callback", "invalid callback", {"$": ["must be an object"]})
    try:
        data: dict[str, Any] = CallbackSchema().load(body)
    except ValidationError as exc:
        raise ApiError(400, "invalid_callback", "invalid callback", flatten(exc.messages)) from None
    return data
