"""``jobchain models``: list, show, apply, export and order dependency graphs.

Like the other commands these talk to a running service through its API. A model is named
by its id or by its name. ``apply`` takes a graph file (``{name, description, assets,
dependencies}``, see examples/models/), creates the model if needed and replaces its graph;
``export`` prints the same shape, so an export applied again changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.cli.client import ApiClient
from app.cli.shared import api_call

# What a graph file holds besides the graph PUT /models/{id}/graph takes.
MODEL_FIELDS = ("name", "description")


@click.group("models")
def models() -> None:
    """Dependency graphs: models of assets, each refreshed after what it depends on."""


@models.command("list")
@click.pass_obj
def list_models(client: ApiClient) -> None:
    """List models with their number of assets."""
    for model in api_call(client.models):
        click.echo(_summary(model))


@models.command()
@click.argument("model")
@click.option("--transitive", is_flag=True, help="All ancestors and descendants.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def show(client: ApiClient, model: str, transitive: bool, as_json: bool) -> None:
    """Show a model and its assets with what each depends on and is required by."""
    model_id = resolve_model(client, model)
    found = api_call(lambda: client.model(model_id))
    assets = api_call(lambda: client.assets(model_id, transitive))
    if as_json:
        click.echo(json.dumps({**found, "assets": assets}, indent=2))
        return
    click.echo(_summary(found))
    for asset in assets:
        timing = f"  cron {asset['cron']} ({asset['timezone']})" if asset["cron"] else ""
        click.echo(
            f"  {asset['id']:>6}  {asset['name']:<24} {asset['job']['targetObject']}{timing}"
        )
        if asset["dependsOn"]:
            click.echo(f"          depends on  {_names(asset['dependsOn'])}")
        if asset["requiredBy"]:
            click.echo(f"          required by {_names(asset['requiredBy'])}")


@models.command()
@click.argument("file", type=click.File("r"))
@click.option("--name", default=None, help="The model's name (default: the file's name).")
@click.pass_obj
def apply(client: ApiClient, file: Any, name: str | None) -> None:
    """Apply a graph file ('-' for stdin): create the model if needed, then make its
    assets and dependencies exactly those of the file."""
    try:
        document = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise click.ClickException(f"{file.name}: a graph file is a JSON object")
    from_stdin = file.name in ("-", "<stdin>")
    name = name or document.get("name") or (None if from_stdin else Path(file.name).stem)
    if not name:
        raise click.ClickException('no model name: give --name or a "name" in the file')
    graph = {k: v for k, v in document.items() if k not in MODEL_FIELDS}
    model_id = find_model(client, name)
    if model_id is None:
        body = {"name": name, "description": document.get("description")}
        model_id = int(api_call(lambda: client.create_model(body))["id"])
        click.echo(f"created model {model_id} {name}")
    elif "description" in document:
        changes = {"description": document["description"]}
        api_call(lambda: client.update_model(model_id, changes))
    applied = api_call(lambda: client.put_graph(model_id, graph))
    click.echo(
        f"applied {len(applied['assets'])} assets and "
        f"{len(applied['dependencies'])} dependencies to model {model_id} {name}"
    )


@models.command()
@click.argument("model")
@click.pass_obj
def export(client: ApiClient, model: str) -> None:
    """Print a model's graph file (what `models apply` takes)."""
    model_id = resolve_model(client, model)
    found = api_call(lambda: client.model(model_id))
    graph = api_call(lambda: client.graph(model_id))
    document = {"name": found["name"], "description": found["description"], **graph}
    click.echo(json.dumps(document, indent=2))


@models.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def order(client: ApiClient, model: str, as_json: bool) -> None:
    """The order a run refreshes the model's assets in, level by level (the assets of one
    level may refresh at once)."""
    found = api_call(lambda: client.order(resolve_model(client, model)))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for i, level in enumerate(found["levels"]):
        click.echo(f"level {i}: {', '.join(level)}")


def find_model(client: ApiClient, name: str) -> int | None:
    """The id of the model named ``name``, or None."""
    for found in api_call(client.models):
        if found["name"] == name:
            return int(found["id"])
    return None


def resolve_model(client: ApiClient, model: str) -> int:
    """An id as given; a name looked up among the models."""
    if model.isdigit():
        return int(model)
    model_id = find_model(client, model)
    if model_id is None:
        raise click.ClickException(f"no model named {model!r}")
    return model_id


def _names(refs: list[dict[str, Any]]) -> str:
    return ", ".join(ref["name"] for ref in refs)


def _summary(model: dict[str, Any]) -> str:
    description = f"  {model['description']}" if model["description"] else ""
    return f"{model['id']:>6}  {model['name']:<24} {model['assetCount']:>4} assets{description}"
