"""Response shapes of the API (dump-only), camelCase with ISO 8601 UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import g, has_request_context
from marshmallow import Schema, fields, post_dump

from app.security.roles import allows

# Who may see which process holds a job's lease (host:pid): not a reader.
LEASE_OWNER_ROLE = "submitter"


class EpochDateTime(fields.Field):
    """Stored epoch seconds -> ``2026-11-22T13:26:51.123456Z``."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        stamp = datetime.fromtimestamp(value, tz=UTC).isoformat(timespec="microseconds")
        return stamp.replace("+00:00", "Z")


# Converts parameter schemas to JSON Schema; a spec of its own, never served.
_PLUGIN = MarshmallowPlugin()
APISpec("parameters", "1", "3.0.3", plugins=[_PLUGIN])


class JobSchema(Schema):
    id = fields.Integer()
    targetObject = fields.String(attribute="target_object")
    jobType = fields.String(attribute="job_type")
    targetId = fields.String(attribute="target_id", allow_none=True)
    parameters = fields.Dict()
    executeOnError = fields.Boolean(attribute="execute_on_error")
    maxAttempts = fields.Integer(attribute="max_attempts")
    timeoutSeconds = fields.Float(attribute="timeout_seconds", allow_none=True)
    status = fields.String()
    cancelRequested = fields.Boolean(attribute="cancel_requested")
    parentId = fields.Integer(attribute="parent_id", allow_none=True)
    rootId = fields.Integer(attribute="root_id")
    nextJobIds = fields.List(fields.Integer(), attribute="next_job_ids")
    blockedBy = fields.Integer(attribute="blocked_by", allow_none=True)
    joinId = fields.Integer(attribute="join_id", allow_none=True)
    attempt = fields.Integer()
    message = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    progress = fields.Float(allow_none=True)
    leaseOwner = fields.String(
        attribute="lease_owner",
        allow_none=True,
        metadata={
            "description": "the worker process holding the lease (host:pid); "
            f"left out for a token below the {LEASE_OWNER_ROLE} role"
        },
    )
    createdAt = EpochDateTime(attribute="created_at")
    claimedAt = EpochDateTime(
        attribute="claimed_at",
        allow_none=True,
        metadata={
            "description": "when a worker claimed the latest attempt (it may then wait behind "
            "other jobs of the worker's batch before it starts); null if never claimed"
        },
    )
    startedAt = EpochDateTime(
        attribute="started_at",
        allow_none=True,
        metadata={
            "description": "when the latest attempt's function really started (a JOIN node: "
            "its arrival); null while it waits in its worker's batch, or never ran"
        },
    )
    finishedAt = EpochDateTime(
        attribute="finished_at",
        allow_none=True,
        metadata={
            "description": "when the job ended: its function returned or raised, its "
            "callback arrived, or it was cancelled, skipped or failed without running; null "
            "while it has not ended (also while it waits for an automatic retry)"
        },
    )
    runAfter = EpochDateTime(attribute="run_after")

    @post_dump
    def _hide_lease_owner(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """A reader does not learn the hosts and process ids of the workers."""
        if not shows_lease_owner():
            data.pop("leaseOwner", None)
        return data


def shows_lease_owner() -> bool:
    """Whether this request's caller may see ``leaseOwner`` (always, outside a request)."""
    if not has_request_context():
        return True
    token = g.get("api_token")
    return token is not None and allows(token.role, LEASE_OWNER_ROLE)


class JobTreeSchema(JobSchema):
    """The documented tree shape; :func:`dump_tree` produces it without recursion."""

    nextJobs = fields.List(fields.Nested(lambda: JobTreeSchema()), attribute="next_jobs")


def dump_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """A stored tree as JobTreeSchema would dump it, in a loop: a nested schema recurses
    once per level, which a deep (configurable) max_depth could push past the stack."""
    flat = JobSchema()
    root: dict[str, Any] = flat.dump(tree)
    stack = [(tree, root)]
    while stack:
        node, out = stack.pop()
        out["nextJobs"] = [flat.dump(child) for child in node["next_jobs"]]
        stack.extend(zip(node["next_jobs"], out["nextJobs"], strict=True))
    return root


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobSchema))
    nextCursor = fields.String(allow_none=True)


class JobEventSchema(Schema):
    id = fields.Integer()
    jobId = fields.Integer(attribute="job_id")
    fromStatus = fields.String(attribute="from_status", allow_none=True)
    toStatus = fields.String(attribute="to_status")
    attempt = fields.Integer()
    at = EpochDateTime(metadata={"description": "when the change was recorded"})
    reason = fields.String()
    # A hand-back of a claimed, never started job and the claim it undid: kept in the log,
    # left out of the status history the console and `jobchain events` show.
    internal = fields.Boolean()
    startedAt = EpochDateTime(
        attribute="started_at",
        allow_none=True,
        metadata={
            "description": "on the event that ended an attempt: when its function started "
            "(null on other events, and where unknown)"
        },
    )
    finishedAt = EpochDateTime(
        attribute="finished_at",
        allow_none=True,
        metadata={
            "description": "on the event that ended an attempt: when its function returned "
            "or its callback arrived (null on other events, and where unknown: its worker "
            "vanished)"
        },
    )


class JobEventListSchema(Schema):
    items = fields.List(fields.Nested(JobEventSchema))


class JobLogSchema(Schema):
    jobId = fields.Integer(attribute="job_id")
    lines = fields.List(fields.String())
    droppedBytes = fields.Integer(attribute="dropped_bytes")


def parameters_schema(params: Schema | None) -> dict[str, Any]:
    """A job type's parameter schema as the OpenAPI (JSON Schema) object a client can check
    its parameters with before submitting; no schema is any object."""
    if params is None:
        return {"type": "object", "additionalProperties": True}
    converter = _PLUGIN.converter
    assert converter is not None
    document: dict[str, Any] = converter.schema2jsonschema(params)
    return document


class JobTypeSchema(Schema):
    name = fields.String()
    description = fields.String()
    role = fields.String(metadata={"description": "the API role needed to submit this type"})
    parameters = fields.Function(
        lambda job_type: parameters_schema(job_type.params),
        metadata={
            "type": "object",
            "additionalProperties": True,
            "description": "the JSON Schema its parameters are checked against at submission",
        },
    )


class JobTypeListSchema(Schema):
    items = fields.List(fields.Nested(JobTypeSchema))


class ErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class ErrorSchema(Schema):
    """Every 4xx/5xx body; details maps e.g. a payload path to its problems."""

    error = fields.Nested(ErrorBodySchema)
