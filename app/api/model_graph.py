"""The models API, continued: a model's dependencies, its refresh order, and its whole
graph as a file. Views of the ``models_api`` blueprint (``models.py``).

A dependency that would close a cycle is refused naming the cycle; checking and storing
happen under the model's lock (app/store/graph_changes.py), so concurrent changes cannot
close one either.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import ValidationError

from app.api.asset_status import stored_fields
from app.api.errors import ApiError
from app.api.graph_schemas import (
    DependencyInputSchema,
    DependencySchema,
    GraphAssetSchema,
    GraphDependencySchema,
    GraphInputSchema,
    GraphSchema,
    check_asset,
    load,
)
from app.api.models import model_not_found, model_or_404, models_api, reject
from app.api.shared import MAX_ID, json_body, runtime
from app.domain import graphs as rules
from app.domain.payload import flatten
from app.store import graph_changes, graphs
from app.store.database import Database

# A graph file is checked whole; these bound the work (the body size bounds it too).
MAX_GRAPH_ASSETS = 10_000
MAX_GRAPH_DEPENDENCIES = 50_000


@models_api.post("/models/<int:model_id>/dependencies")
def add_dependency(model_id: int) -> tuple[Response, int, dict[str, str]]:
    """Make the downstream asset wait for the upstream one.
    ---
    post:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        description: upstream_id and downstream_id are accepted too
        content: {application/json: {schema: DependencyInput}}
      responses:
        201: {description: The dependency, content: {application/json: {schema: Dependency}}}
        400:
          description: >-
            Invalid body; dependency_cycle (details.cycle names it); cross_model_dependency
          content: {application/json: {schema: Error}}
        404: {description: No such model or asset, content: {application/json: {schema: Error}}}
        409: {description: The dependency exists, content: {application/json: {schema: Error}}}
    """
    data = load(DependencyInputSchema(), json_body(), "invalid_dependency", "dependency")
    db = runtime().db
    dependency_id = store_dependency(db, model_id, data["upstreamId"], data["downstreamId"])
    found = graph_changes.get_dependency(db, model_id, dependency_id)
    location = {"Location": f"/api/v1/models/{model_id}/dependencies/{dependency_id}"}
    return jsonify(DependencySchema().dump(found)), 201, location


def store_dependency(db: Database, model_id: int, upstream_id: int, downstream_id: int) -> int:
    """Store "downstream depends on upstream" through the store's checks (under the model's
    lock: app/store/graph_changes.py); returns its id. Each refusal is raised as the API
    answers it (ApiError): the console shows the same messages.
    """
    for asset_id in (upstream_id, downstream_id):
        if asset_id > MAX_ID:
            raise unknown_asset(asset_id)
    if model_id > MAX_ID:
        raise model_not_found(model_id)
    try:
        return graph_changes.add_dependency(db, model_id, upstream_id, downstream_id)
    except graphs.ModelNotFound:
        raise model_not_found(model_id) from None
    except graph_changes.UnknownAsset as exc:
        raise unknown_asset(exc.asset_id) from None
    except graph_changes.CrossModel as exc:
        raise ApiError(
            400,
            "cross_model_dependency",
            f"a dependency joins assets of one model; not of model {model_id}: "
            + ", ".join(exc.names),
            {"assets": exc.names},
        ) from None
    except graph_changes.DuplicateDependency as exc:
        raise ApiError(
            409,
            "duplicate_dependency",
            f"asset {downstream_id} already depends on asset {upstream_id} "
            f"(dependency {exc.dependency_id})",
            {"dependencyId": exc.dependency_id},
        ) from None
    except graph_changes.DependencyCycle as exc:
        raise cycle_error(exc.cycle) from None


@models_api.get("/models/<int:model_id>/dependencies")
def list_dependencies(model_id: int) -> Response:
    """Every dependency of the model, oldest first.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      responses:
        200: {content: {application/json: {schema: DependencyList}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    found = graphs.list_dependencies(runtime().db, model_id) if model_id <= MAX_ID else None
    if found is None:
        raise model_not_found(model_id)
    return jsonify({"items": DependencySchema(many=True).dump(found)})


@models_api.delete("/models/<int:model_id>/dependencies/<int:dependency_id>")
def delete_dependency(model_id: int, dependency_id: int) -> tuple[str, int]:
    """Delete a dependency: the downstream no longer waits for the upstream.
    ---
    delete:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      - {in: path, name: dependency_id, required: true, schema: {type: integer}}
      responses:
        204: {description: Deleted}
        404: {description: No such dependency, content: {application/json: {schema: Error}}}
    """
    deleted = max(model_id, dependency_id) <= MAX_ID and graph_changes.delete_dependency(
        runtime().db, model_id, dependency_id
    )
    if not deleted:
        raise ApiError(404, "not_found", f"model {model_id} has no dependency {dependency_id}")
    return "", 204


@models_api.get("/models/<int:model_id>/order")
def get_order(model_id: int) -> Response:
    """The order a run refreshes the assets in, and the levels that may refresh at once.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      responses:
        200: {content: {application/json: {schema: Order}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    found = graphs.names_and_edges(runtime().db, model_id) if model_id <= MAX_ID else None
    if found is None:
        raise model_not_found(model_id)
    names, edges = found
    return jsonify(
        {"order": rules.topological_order(names, edges), "levels": rules.levels(names, edges)}
    )


@models_api.get("/models/<int:model_id>/graph")
def get_graph(model_id: int) -> Response:
    """The model's graph as a file, in the shape PUT takes.
    ---
    get:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      responses:
        200: {content: {application/json: {schema: Graph}}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
    """
    found = graphs.get_graph(runtime().db, model_id) if model_id <= MAX_ID else None
    if found is None:
        raise model_not_found(model_id)
    return jsonify(GraphSchema().dump(found))


@models_api.put("/models/<int:model_id>/graph")
def put_graph(model_id: int) -> Response:
    """Replace the model's graph: assets by name (kept ones keep their ids), dependencies
    by names. All of it is checked first, every problem reported; then one transaction.
    ---
    put:
      parameters:
      - {in: path, name: model_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: GraphInput}}
      responses:
        200: {content: {application/json: {schema: Graph}}}
        400:
          description: invalid_graph naming every problem; dependency_cycle if only cycles
          content: {application/json: {schema: Error}}
        404: {description: No such model, content: {application/json: {schema: Error}}}
        409:
          description: An asset left out is refreshing
          content: {application/json: {schema: Error}}
    """
    model_or_404(model_id)
    body = load(GraphInputSchema(), json_body(), "invalid_graph", "graph")
    new_assets, edges = check_graph(body)
    try:
        graph_changes.replace_graph(runtime().db, model_id, new_assets, edges)
    except graphs.ModelNotFound:
        raise model_not_found(model_id) from None
    except graphs.Refreshing as exc:
        raise ApiError(
            409,
            "asset_refreshing",
            f"cannot remove assets while they refresh: {', '.join(exc.names)}",
            {"refreshing": exc.names},
        ) from None
    return jsonify(GraphSchema().dump(graphs.get_graph(runtime().db, model_id)))


def check_graph(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[rules.Edge]]:
    """The file's assets (loaded) and edges, or a 400 naming every problem by path."""
    problems: dict[str, list[str]] = {}
    if len(body["assets"]) > MAX_GRAPH_ASSETS:
        problems["assets"] = [f"more than {MAX_GRAPH_ASSETS} assets"]
    if len(body["dependencies"]) > MAX_GRAPH_DEPENDENCIES:
        problems["dependencies"] = [f"more than {MAX_GRAPH_DEPENDENCIES} dependencies"]
    reject(problems, "invalid_graph", "invalid graph")
    loaded: list[dict[str, Any]] = []
    first_of: dict[str, int] = {}
    for i, raw in enumerate(body["assets"]):
        path = f"assets[{i}]"
        try:
            asset = GraphAssetSchema().load(raw)
        except ValidationError as exc:
            problems.update(flatten(exc.messages, path))
            continue
        if asset["kind"] == "job":
            asset.setdefault("job", None)
        problems.update(check_asset(asset, path))
        name = asset["name"]
        if name in first_of:
            problems[f"{path}.name"] = [f"{name!r} is also assets[{first_of[name]}]"]
            continue
        first_of[name] = i
        loaded.append(stored_fields(asset))  # codeVersion -> code_version; a source has no job
    edges: list[rules.Edge] = []
    at: list[int] = []
    seen: dict[rules.Edge, int] = {}
    for i, raw in enumerate(body["dependencies"]):
        path = f"dependencies[{i}]"
        try:
            dep = GraphDependencySchema().load(raw)
        except ValidationError as exc:
            problems.update(flatten(exc.messages, path))
            continue
        missing = [end for end in ("upstream", "downstream") if dep[end] not in first_of]
        for end in missing:
            problems[f"{path}.{end}"] = [f"no asset named {dep[end]!r} in this graph"]
        edge = (dep["upstream"], dep["downstream"])
        if not missing and edge in seen:
            problems[path] = [f"the same dependency as dependencies[{seen[edge]}]"]
        elif not missing:
            seen[edge] = i
            edges.append(edge)
            at.append(i)
    cycles = rules.closing_edges(edges)
    for index, cycle in cycles:
        problems[f"dependencies[{at[index]}]"] = [rules.describe_cycle(cycle)]
    if problems:
        details: dict[str, Any] = dict(problems)
        if cycles:
            details["cycle"] = cycles[0][1]
        only_cycles = len(problems) == len(cycles)
        code = "dependency_cycle" if only_cycles else "invalid_graph"
        message = rules.describe_cycle(cycles[0][1]) if only_cycles else "invalid graph"
        raise ApiError(400, code, message, details)
    return loaded, edges


def cycle_error(cycle: list[str]) -> ApiError:
    return ApiError(
        400,
        "dependency_cycle",
        f"refused: it would close a cycle: {rules.describe_cycle(cycle)}",
        {"cycle": cycle},
    )


def unknown_asset(asset_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no asset {asset_id}")
