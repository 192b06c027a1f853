"""``jobchain deps``: add, list and delete the dependencies of a model's assets.

"DOWNSTREAM depends on UPSTREAM": the downstream's refresh waits for the upstream's. Models
and assets are named by id or by name; a dependency that would close a cycle is refused
with the cycle spelled out.
"""

from __future__ import annotations

import click

from app.cli.client import ApiClient
from app.cli.models import resolve_model
from app.cli.shared import api_call


@click.group("deps")
def deps() -> None:
    """Dependencies between the assets of a model."""


@deps.command()
@click.argument("model")
@click.argument("upstream")
@click.argument("downstream")
@click.pass_obj
def add(client: ApiClient, model: str, upstream: str, downstream: str) -> None:
    """Make DOWNSTREAM wait for UPSTREAM (assets of MODEL, by name or id)."""
    model_id = resolve_model(client, model)
    ids = _asset_ids(client, model_id)
    up, down = _asset(ids, upstream), _asset(ids, downstream)
    added = api_call(lambda: client.add_dependency(model_id, up, down))
    click.echo(
        f"added dependency {added['id']}: {added['downstream']} depends on {added['upstream']}"
    )


@deps.command("list")
@click.argument("model")
@click.pass_obj
def list_deps(client: ApiClient, model: str) -> None:
    """List MODEL's dependencies, oldest first."""
    model_id = resolve_model(client, model)
    for dep in api_call(lambda: client.dependencies(model_id)):
        click.echo(f"{dep['id']:>6}  {dep['downstream']} depends on {dep['upstream']}")


@deps.command()
@click.argument("model")
@click.argument("dependency", nargs=-1, required=True)
@click.pass_obj
def delete(client: ApiClient, model: str, dependency: tuple[str, ...]) -> None:
    """Delete a dependency of MODEL, given by its id or as UPSTREAM DOWNSTREAM."""
    model_id = resolve_model(client, model)
    if len(dependency) == 1 and dependency[0].isdigit():
        dependency_id = int(dependency[0])
    elif len(dependency) == 2:
        dependency_id = _find(client, model_id, *dependency)
    else:
        raise click.UsageError("give a dependency id, or UPSTREAM DOWNSTREAM")
    api_call(lambda: client.delete_dependency(model_id, dependency_id))
    click.echo(f"deleted dependency {dependency_id}")


def _asset_ids(client: ApiClient, model_id: int) -> dict[str, int]:
    return {a["name"]: int(a["id"]) for a in api_call(lambda: client.assets(model_id))}


def _asset(ids: dict[str, int], asset: str) -> int:
    """An asset's id: a name of the model's assets, or an id as given (the API checks it)."""
    if asset in ids:
        return ids[asset]
    if asset.isdigit():
        return int(asset)
    raise click.ClickException(f"no asset named {asset!r} in this model")


def _find(client: ApiClient, model_id: int, upstream: str, downstream: str) -> int:
    for dep in api_call(lambda: client.dependencies(model_id)):
        ends = (
            {str(dep["upstreamId"]), dep["upstream"]},
            {str(dep["downstreamId"]), dep["downstream"]},
        )
        if upstream in ends[0] and downstream in ends[1]:
            return int(dep["id"])
    raise click.ClickException(f"{downstream} does not depend on {upstream} in this model")
