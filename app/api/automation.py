"""Declarative automation's API, on the models blueprint: a source's observations, an
asset's refreshes, evaluations and hold, and a model's reconciliation ticks and asset
events. What an asset declares (automation, freshness, codeVersion, observe) is on the
asset itself (``models.py``); the rules are ``app/domain/freshness.py`` and ``reconcile.py``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, jsonify, request
from marshmallow import RAISE, Schema, fields, validate

from app.api.errors import ApiError
from app.api.graph_schemas import AssetSchema, load
from app.api.models import asset_or_404, model_or_404, models_api, shown
from app.api.schemas import EpochDateTime
from app.api.shared import json_body, printable, runtime
from app.store import automation_reads

MAX_LIMIT = 200


class ObservationInputSchema(Schema):
    class Meta:
        unknown = RAISE

    dataVersion = fields.String(required=True, validate=[validate.Length(1, 255), printable])
    observedAt = EpochDateTime(metadata={"description": "default: now"})


class ObservationSchema(Schema):
    assetId = fields.Integer()
    dataVersion = fields.String()
    observedAt = EpochDateTime()
    newData = fields.Boolean(metadata={"description": "false: the same version again"})


class AssetRefreshSchema(Schema):
    jobId = fields.Integer(attribute="job_id")
    runId = fields.Integer(attribute="run_id")
    status = fields.String(allow_none=True, metadata={"description": "null once purged"})
    startedAt = EpochDateTime(attribute="started_at", allow_none=True)
    finishedAt = EpochDateTime(attribute="finished_at", allow_none=True)
    dataVersion = fields.String(attribute="data_version", allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "null: run by hand"})


class EvaluationSchema(Schema):
    id = fields.Integer()
    tickId = fields.Integer(attribute="tick_id")
    at = EpochDateTime()
    requested = fields.Boolean()
    conditions = fields.Raw(metadata={"description": "{requested, reason, conditions[]}"})


class TickSchema(Schema):
    id = fields.Integer()
    startedAt = EpochDateTime(attribute="started_at")
    durationMs = fields.Float(attribute="duration_ms")
    evaluated = fields.Integer()
    requested = fields.Integer()
    runId = fields.Integer(attribute="run_id", allow_none=True)
    owner = fields.String()


class AssetEventSchema(Schema):
    id = fields.Integer()
    assetId = fields.Integer(attribute="asset_id")
    asset = fields.String()
    kind = fields.String(metadata={"description": "LATE, RECOVERED, HELD or RELEASED"})
    at = EpochDateTime()
    message = fields.String()


def _page_of(item: type[Schema]) -> type[Schema]:
    """``{items, nextCursor}`` of ``item`` (newest first; pass nextCursor back as cursor)."""
    fields_: dict[str, fields.Field] = {
        "items": fields.List(fields.Nested(item)),
        "nextCursor": fields.String(allow_none=True),
    }
    return Schema.from_dict(fields_, name=item.__name__.replace("Schema", "PageSchema"))


AssetRefreshPageSchema = _page_of(AssetRefreshSchema)
EvaluationPageSchema = _page_of(EvaluationSchema)
TickPageSchema = _page_of(TickSchema)
AssetEventPageSchema = _page_of(AssetEventSchema)


def _page(schema: type[Schema], page: automation_reads.Page) -> Response:
    cursor = str(page.next_cursor) if page.next_cursor is not None else None
    return jsonify({"items": schema(many=True).dump(page.items), "nextCursor": cursor})


def _paging() -> tuple[int | None, int]:
    problems: dict[str, list[str]] = {}
    cursor = limit = None
    unknown = set(request.args) - {"cursor", "limit"}
    for name in sorted(unknown):
        problems[name] = ["unknown query parameter"]
    try:
        raw = request.args.get("cursor")
        cursor = int(raw) if raw is not None else None
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        problems["cursor/limit"] = ["must be integers"]
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        problems["limit"] = [f"must be 1 to {MAX_LIMIT}"]
    if problems:
        raise ApiError(400, "invalid_query", "invalid query parameters", problems)
    return cursor, limit or 50


@models_api.post("/models/<int:model_id>/assets/<int:asset_id>/observations")
def observe(model_id: int, asset_id: int) -> tuple[Response, int]:
    """A source's data version as an integration system sees it (the same version again
    changes nothing).
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: ObservationInput}}
      responses:
        201: {description: New data, content: {application/json: {schema: Observation}}}
        200: {description: Same version again, content: {application/json: {schema: Observation}}}
        400: {description: Invalid observation, content: {application/json: {schema: Error}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
        409: {description: Not a source asset, content: {application/json: {schema: Error}}}
    """
    asset = asset_or_404(model_id, asset_id)
    data = load(ObservationInputSchema(), json_body(), "invalid_observation", "observation")
    if asset["kind"] != "source":
        raise ApiError(409, "not_a_source", f"asset {asset['name']!r} is not a source asset")
    at = data.get("observedAt")
    observed_at = at.timestamp() if at is not None else time.time()
    new = automation_reads.record_observation(
        runtime().db, model_id, asset_id, data["dataVersion"], observed_at
    )
    body: dict[str, Any] = {
        "assetId": asset_id,
        "dataVersion": data["dataVersion"],
        "observedAt": observed_at,
        "newData": new,
    }
    return jsonify(ObservationSchema().dump(body)), 201 if new else 200


@models_api.post("/models/<int:model_id>/assets/<int:asset_id>/release")
def release(model_id: int, asset_id: int) -> Response:
    """End an asset's hold (after repeated failed automated runs): the loop may run it again.
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The asset, content: {application/json: {schema: Asset}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
        409: {description: Not held, content: {application/json: {schema: Error}}}
    """
    asset = asset_or_404(model_id, asset_id)
    if not automation_reads.release(runtime().db, model_id, asset_id):
        raise ApiError(409, "not_held", f"asset {asset['name']!r} is not held")
    return jsonify(AssetSchema().dump(shown(model_id, asset_id)))


@models_api.get("/models/<int:model_id>/assets/<int:asset_id>/refreshes")
def refreshes(model_id: int, asset_id: int) -> Response:
    """The asset's refreshes, newest first, each with the reason it ran.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      - {in: query, name: cursor, schema: {type: integer}}
      - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 200}}
      responses:
        200: {description: The refreshes, content: {application/json: {schema: AssetRefreshPage}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
    """
    cursor, limit = _paging()
    asset_or_404(model_id, asset_id)
    rt = runtime()
    automation_reads.settle_now(rt.db, model_id, rt.settings.automation_max_failures)
    page = automation_reads.refreshes(rt.db, asset_id, cursor, limit)
    return _page(AssetRefreshSchema, page)


@models_api.get("/models/<int:model_id>/assets/<int:asset_id>/evaluations")
def evaluations(model_id: int, asset_id: int) -> Response:
    """The asset's evaluations by reconciliation ticks, newest first; one is kept only when
    its result differs from the one before ("why did, or didn't, it run?").
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      - {in: query, name: cursor, schema: {type: integer}}
      - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 200}}
      responses:
        200: {description: Evaluations, content: {application/json: {schema: EvaluationPage}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
    """
    cursor, limit = _paging()
    asset_or_404(model_id, asset_id)
    page = automation_reads.evaluations(runtime().db, asset_id, cursor, limit)
    return _page(EvaluationSchema, page)


@models_api.get("/models/<int:model_id>/automation/ticks")
def ticks(model_id: int) -> Response:
    """The model's reconciliation ticks that evaluated something, newest first.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: query, name: cursor, schema: {type: integer}}
      - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 200}}
      responses:
        200: {description: Ticks, content: {application/json: {schema: TickPage}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    cursor, limit = _paging()
    model_or_404(model_id)
    return _page(TickSchema, automation_reads.ticks(runtime().db, model_id, cursor, limit))


@models_api.get("/models/<int:model_id>/automation/events")
def events(model_id: int) -> Response:
    """The model's asset events, newest first: LATE and RECOVERED (one each per episode),
    HELD and RELEASED.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: query, name: cursor, schema: {type: integer}}
      - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 200}}
      responses:
        200: {description: Events, content: {application/json: {schema: AssetEventPage}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    cursor, limit = _paging()
    model_or_404(model_id)
    page = automation_reads.events(runtime().db, model_id, None, cursor, limit)
    return _page(AssetEventSchema, page)
