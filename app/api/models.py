"""The models API under /api/v1/models: named dependency graphs and their assets.

A model's assets are what its jobs refresh; "B depends on A" makes B's refresh wait for
A's. This module holds the blueprint and the model and asset views; the dependencies, the
order and the graph as a file are in ``model_graph``, on the same blueprint. Who may call
what follows from the method (app/security/roles.py): GET needs reader, changes admin.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from app.api.asset_status import filtered, stored_fields, with_status
from app.api.errors import ApiError
from app.api.graph_schemas import (
    AssetInputSchema,
    AssetPatchSchema,
    AssetSchema,
    ModelInputSchema,
    ModelPatchSchema,
    ModelSchema,
    check_asset,
    load,
)
from app.api.shared import MAX_ID, json_body, runtime
from app.store import graph_changes, graphs

models_api = Blueprint("models_api", __name__, url_prefix="/api/v1")


# -- models ------------------------------------------------------------------------------


@models_api.post("/models")
def create_model() -> tuple[Response, int, dict[str, str]]:
    """Create a model: a named graph of assets.
    ---
    post:
      requestBody:
        required: true
        content: {application/json: {schema: ModelInput}}
      responses:
        201: {description: The model, content: {application/json: {schema: Model}}}
        400: {description: Invalid model, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    data = load(ModelInputSchema(), json_body(), "invalid_model", "model")
    try:
        model_id = graphs.create_model(runtime().db, data["name"], data.get("description"))
    except graphs.NameTaken:
        raise name_taken("model", data["name"]) from None
    location = {"Location": f"/api/v1/models/{model_id}"}
    return jsonify(ModelSchema().dump(model_or_404(model_id))), 201, location


@models_api.get("/models")
def list_models() -> Response:
    """Every model by name.
    ---
    get:
      responses:
        200: {description: The models, content: {application/json: {schema: ModelList}}}
    """
    return jsonify({"items": ModelSchema(many=True).dump(graphs.list_models(runtime().db))})


@models_api.get("/models/<int:model_id>")
def get_model(model_id: int) -> Response:
    """A model with its number of assets.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The model, content: {application/json: {schema: Model}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    return jsonify(ModelSchema().dump(model_or_404(model_id)))


@models_api.patch("/models/<int:model_id>")
def update_model(model_id: int) -> Response:
    """Rename a model or change its description.
    ---
    patch:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: ModelPatch}}
      responses:
        200: {description: The model, content: {application/json: {schema: Model}}}
        400: {description: Invalid change, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    changes = load(ModelPatchSchema(), json_body(), "invalid_model", "model")
    model_or_404(model_id)
    try:
        found = graphs.update_model(runtime().db, model_id, changes)
    except graphs.NameTaken:
        raise name_taken("model", changes["name"]) from None
    if not found:
        raise model_not_found(model_id)
    return jsonify(ModelSchema().dump(model_or_404(model_id)))


@models_api.delete("/models/<int:model_id>")
def delete_model(model_id: int) -> tuple[str, int]:
    """Delete a model with its assets and dependencies; the jobs of its runs are kept.
    ---
    delete:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      responses:
        204: {description: Deleted}
        404: {description: No such model, content: {application/json: {schema: Error}}}
        409: {description: A run is active, content: {application/json: {schema: Error}}}
    """
    try:
        deleted = model_id <= MAX_ID and graphs.delete_model(runtime().db, model_id)
    except graphs.Refreshing as exc:
        raise ApiError(
            409,
            "run_active",
            f"model {model_id} has a run in progress ({', '.join(exc.names)}); "
            "cancel it or let it end first",
            {"runs": [int(name.split()[-1]) for name in exc.names]},
        ) from None
    if not deleted:
        raise model_not_found(model_id)
    return "", 204


# -- assets ------------------------------------------------------------------------------


@models_api.post("/models/<int:model_id>/assets")
def create_asset(model_id: int) -> tuple[Response, int, dict[str, str]]:
    """Add an asset: a name unique in the model and the job that refreshes it.
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: AssetInput}}
      responses:
        201: {description: The asset, content: {application/json: {schema: Asset}}}
        400: {description: Invalid asset, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    model_or_404(model_id)
    data = load(AssetInputSchema(), json_body(), "invalid_asset", "asset")
    if data["kind"] == "job":
        data.setdefault("job", None)
    reject(check_asset(data), "invalid_asset", "invalid asset")
    data = stored_fields(data)
    try:
        asset_id = graph_changes.create_asset(runtime().db, model_id, data)
    except graphs.ModelNotFound:
        raise model_not_found(model_id) from None
    except graphs.NameTaken:
        raise name_taken("asset", data["name"]) from None
    location = {"Location": f"/api/v1/models/{model_id}/assets/{asset_id}"}
    return jsonify(AssetSchema().dump(shown(model_id, asset_id))), 201, location


@models_api.get("/models/<int:model_id>/assets")
def list_assets(model_id: int) -> Response:
    """The model's assets by name, each with what it depends on and what requires it.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - in: query
        name: transitive
        schema: {type: boolean, default: false}
        description: all ancestors and descendants instead of direct neighbours
      - {in: query, name: status, schema: {type: string, enum: [MISSING, STALE, FRESH]}}
      - {in: query, name: late, schema: {type: boolean}}
      responses:
        200: {description: The assets, content: {application/json: {schema: AssetList}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    transitive = transitive_arg(frozenset({"status", "late"}))
    found = graphs.list_assets(runtime().db, model_id, transitive) if model_id <= MAX_ID else None
    if found is None:
        raise model_not_found(model_id)
    found = filtered(with_status(model_id, found))
    return jsonify({"items": AssetSchema(many=True).dump(found)})


@models_api.get("/models/<int:model_id>/assets/<int:asset_id>")
def get_asset(model_id: int, asset_id: int) -> Response:
    """An asset with dependsOn and requiredBy (all of them with ?transitive=true).
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      - {in: query, name: transitive, schema: {type: boolean, default: false}}
      responses:
        200: {description: The asset, content: {application/json: {schema: Asset}}}
        400: {description: Invalid query, content: {application/json: {schema: Error}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
    """
    return jsonify(AssetSchema().dump(shown(model_id, asset_id, transitive_arg())))


@models_api.patch("/models/<int:model_id>/assets/<int:asset_id>")
def update_asset(model_id: int, asset_id: int) -> Response:
    """Change an asset's name, job, cron, time zone or description.
    ---
    patch:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: AssetPatch}}
      responses:
        200: {description: The asset, content: {application/json: {schema: Asset}}}
        400: {description: Invalid change, content: {application/json: {schema: Error}}}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    current = asset_or_404(model_id, asset_id)
    changes = load(AssetPatchSchema(), json_body(), "invalid_asset", "asset")
    timing = {}
    if "cron" in changes or "timezone" in changes:
        timing = {k: changes.get(k, current[k]) for k in ("cron", "timezone")}
    reject(
        check_asset({"kind": current["kind"], **changes, **timing}),
        "invalid_asset",
        "invalid asset",
    )
    changes = stored_fields(changes)
    try:
        found = graph_changes.update_asset(runtime().db, model_id, asset_id, changes)
    except graphs.NameTaken:
        raise name_taken("asset", changes["name"]) from None
    if not found:
        raise asset_not_found(model_id, asset_id)
    return jsonify(AssetSchema().dump(shown(model_id, asset_id)))


@models_api.delete("/models/<int:model_id>/assets/<int:asset_id>")
def delete_asset(model_id: int, asset_id: int) -> tuple[str, int]:
    """Delete an asset and every dependency it is an end of.
    ---
    delete:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: asset_id, required: true, schema: {type: integer}}
      responses:
        204: {description: Deleted}
        404: {description: No such asset, content: {application/json: {schema: Error}}}
        409: {description: The asset is refreshing, content: {application/json: {schema: Error}}}
    """
    try:
        deleted = max(model_id, asset_id) <= MAX_ID and graph_changes.delete_asset(
            runtime().db, model_id, asset_id
        )
    except graphs.Refreshing:
        raise ApiError(
            409, "asset_refreshing", f"asset {asset_id} is refreshing; delete it once it ended"
        ) from None
    if not deleted:
        raise asset_not_found(model_id, asset_id)
    return "", 204


# -- shared by this blueprint's views ----------------------------------------------------


def transitive_arg(others: frozenset[str] = frozenset()) -> bool:
    """?transitive=true|false (default false); anything else (but ``others``) is a 400."""
    unknown = set(request.args) - {"transitive"} - others
    value = request.args.get("transitive", "false").lower()
    if unknown or value not in ("true", "false"):
        details = {name: ["unknown query parameter"] for name in sorted(unknown)}
        if value not in ("true", "false"):
            details["transitive"] = ["must be true or false"]
        raise ApiError(400, "invalid_query", "invalid query parameters", details)
    return value == "true"


def reject(details: dict[str, list[str]], code: str, message: str) -> None:
    if details:
        raise ApiError(400, code, message, details)


def model_or_404(model_id: int) -> dict[str, Any]:
    found = graphs.get_model(runtime().db, model_id) if model_id <= MAX_ID else None
    if found is None:
        raise model_not_found(model_id)
    return found


def asset_or_404(model_id: int, asset_id: int, transitive: bool = False) -> dict[str, Any]:
    found = None
    if max(model_id, asset_id) <= MAX_ID:
        found = graphs.get_asset(runtime().db, model_id, asset_id, transitive)
    if found is None:
        raise asset_not_found(model_id, asset_id)
    return found


def shown(model_id: int, asset_id: int, transitive: bool = False) -> dict[str, Any]:
    """The asset with its automation status."""
    return with_status(model_id, [asset_or_404(model_id, asset_id, transitive)])[0]


def model_not_found(model_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no model {model_id}")


def asset_not_found(model_id: int, asset_id: int) -> ApiError:
    return ApiError(404, "not_found", f"model {model_id} has no asset {asset_id}")


def name_taken(kind: str, name: str) -> ApiError:
    what = "an asset" if kind == "asset" else "a model"
    where = " in this model" if kind == "asset" else ""
    return ApiError(409, "name_taken", f"{what} named {name!r} already exists{where}")


# The dependency, order, graph and run views register on models_api when imported.
from app.api import automation, model_graph, runs  # noqa: E402, F401
