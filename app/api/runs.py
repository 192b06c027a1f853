"""The models API, continued: runs of a model and its batches. Views of the ``models_api``
blueprint (``models.py``).

A run is one ordinary chain compiled from the model's graph (app/services/runs.py); its
state and its assets' progress are read from the jobs, never stored apart from them.
Starting and cancelling runs needs the submitter role (app/security/roles.py).
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request

from app.api.errors import ApiError
from app.api.graph_schemas import load
from app.api.models import model_not_found, model_or_404, models_api
from app.api.run_schemas import (
    BatchSchema,
    RunInputSchema,
    RunListArgsSchema,
    RunSchema,
)
from app.api.shared import MAX_ID, json_body, runtime
from app.domain.payload import PayloadError
from app.domain.runs import RunRefused
from app.services.runs import RunService
from app.services.submit import RoleDenied
from app.store import run_reads, runs
from app.store.graphs import ModelNotFound
from app.store.join_setup import JoinConflict


@models_api.post("/models/<int:model_id>/runs")
def start_run(model_id: int) -> tuple[Response, int, dict[str, str]]:
    """Refresh assets: the named ones (default all; with a batch, the roots) and what
    depends on them, each after its upstreams, as one chain.
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: RunInput}}
      responses:
        201: {description: The run, content: {application/json: {schema: Run}}}
        400:
          description: invalid_run (unknown assets, bad fields) or invalid_payload
          content: {application/json: {schema: Error}}
        403:
          description: An asset's job type needs a higher role
          content: {application/json: {schema: Error}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
        409:
          description: >-
            already_in_batch (unless force), or join_conflict (the graph changed mid-batch)
          content: {application/json: {schema: Error}}
    """
    model_or_404(model_id)
    data = load(RunInputSchema(), json_body(), "invalid_run", "run")
    if data.get("batch") is not None and data["downstream"] is False:
        raise ApiError(
            400,
            "invalid_run",
            "a batch always starts what depends on its assets",
            {"downstream": ["must be true with a batch"]},
        )
    request_ = runs.RunRequest(
        assets=data.get("assets"),
        batch=data.get("batch"),
        downstream=data["downstream"],
        force=data["force"],
    )
    try:
        run_id = RunService.for_runtime(runtime()).start(model_id, request_, g.api_token.role)
    except ModelNotFound:
        raise model_not_found(model_id) from None
    except RunRefused as exc:
        raise ApiError(400, "invalid_run", str(exc), exc.details) from None
    except runs.AlreadyInBatch as exc:
        raise ApiError(
            409,
            "already_in_batch",
            f"already refreshing or refreshed in batch {exc.batch}: {', '.join(exc.names)}; "
            "force: true refreshes them again",
            {"assets": exc.names, "batch": exc.batch},
        ) from None
    except RoleDenied as exc:
        raise ApiError(403, "insufficient_role", exc.message, exc.details) from None
    except PayloadError as exc:
        raise ApiError(exc.status, "invalid_payload", exc.message, exc.details) from None
    except JoinConflict as exc:
        raise ApiError(409, "join_conflict", str(exc)) from None
    location = {"Location": f"/api/v1/models/{model_id}/runs/{run_id}"}
    return jsonify(RunSchema().dump(_run_or_404(model_id, run_id))), 201, location


@models_api.get("/models/<int:model_id>/runs")
def list_runs(model_id: int) -> Response:
    """The model's runs, oldest first.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: query, name: batch, schema: {type: string}}
      - in: query
        name: state
        schema: {type: string, enum: [RUNNING, SUCCEEDED, FAILED, CANCELLED]}
      responses:
        200: {description: The runs, content: {application/json: {schema: RunList}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    args = load(RunListArgsSchema(), dict(request.args), "invalid_query", "query parameters")
    model_or_404(model_id)
    found = run_reads.list_runs(runtime().db, model_id, args.get("batch"), args.get("state"))
    return jsonify({"items": RunSchema(many=True).dump(found)})


@models_api.get("/models/<int:model_id>/runs/<int:run_id>")
def get_run(model_id: int, run_id: int) -> Response:
    """A run: per asset its job, status, start, end and what a waiting asset waits for.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: run_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The run, content: {application/json: {schema: Run}}}
        404: {description: No such run, content: {application/json: {schema: Error}}}
    """
    return jsonify(RunSchema().dump(_run_or_404(model_id, run_id)))


@models_api.post("/models/<int:model_id>/runs/<int:run_id>/cancel")
def cancel_run(model_id: int, run_id: int) -> Response:
    """Cancel the whole run: every job of its chain not ended yet (running ones are asked
    to stop).
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: run_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The run after the cancel, content: {application/json: {schema: Run}}}
        404: {description: No such run, content: {application/json: {schema: Error}}}
        409: {description: The run has ended, content: {application/json: {schema: Error}}}
    """
    run = _run_or_404(model_id, run_id)
    if run["state"] != run_reads.RUNNING:
        raise ApiError(409, "run_ended", f"run {run_id} is {run['state']}; nothing to cancel")
    try:
        runs.cancel_run(runtime().db, model_id, run_id)
    except runs.RunNotFound:
        raise run_not_found(model_id, run_id) from None
    return jsonify(RunSchema().dump(_run_or_404(model_id, run_id)))


@models_api.get("/models/<int:model_id>/batches/<batch>")
def get_batch(model_id: int, batch: str) -> Response:
    """A batch's task log: per asset the latest job refreshing it in the batch, as NEW,
    PROCESSING, SUCCESS or ERROR.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: batch, required: true, schema: {type: string}}
      responses:
        200: {description: The task log, content: {application/json: {schema: Batch}}}
        404: {description: No such model or batch, content: {application/json: {schema: Error}}}
    """
    model_or_404(model_id)
    tasks = run_reads.batch_log(runtime().db, model_id, batch)
    if tasks is None:
        raise ApiError(404, "not_found", f"model {model_id} has no batch {batch!r}")
    return jsonify(BatchSchema().dump({"modelId": model_id, "batch": batch, "tasks": tasks}))


def _run_or_404(model_id: int, run_id: int) -> dict[str, Any]:
    found = None
    if max(model_id, run_id) <= MAX_ID:
        found = run_reads.get_run(runtime().db, model_id, run_id)
    if found is None:
        raise run_not_found(model_id, run_id)
    return found


def run_not_found(model_id: int, run_id: int) -> ApiError:
    return ApiError(404, "not_found", f"model {model_id} has no run {run_id}")
