"""``jobchain models run``: start a run of a model and, with --wait, follow it to its end.

A run is compiled by the service into one chain; this command only asks for it and shows
each asset's job and status (and what a waiting asset waits for).
"""

from __future__ import annotations

import time
from typing import Any

import click

from app.cli.client import ApiClient
from app.cli.models import models, resolve_model
from app.cli.shared import api_call

# How often --wait looks at the run again.
POLL_SECONDS = 0.5


@models.command("run")
@click.argument("model")
@click.option("--asset", "assets", multiple=True, help="An asset to refresh (repeatable).")
@click.option("--batch", default=None, help="Refresh for this batch (default: a refresh).")
@click.option("--no-downstream", is_flag=True, help="Not what depends on the assets.")
@click.option("--force", is_flag=True, help="Refresh again assets already in the batch.")
@click.option("--wait", is_flag=True, help="Wait for the run to end; fail unless it succeeded.")
@click.pass_obj
def run(
    client: ApiClient,
    model: str,
    assets: tuple[str, ...],
    batch: str | None,
    no_downstream: bool,
    force: bool,
    wait: bool,
) -> None:
    """Refresh a model's assets (default: all; with --batch, its roots) and, unless
    --no-downstream, everything that depends on them, each after its upstreams."""
    model_id = resolve_model(client, model)
    body: dict[str, Any] = {"force": force}
    if assets:
        body["assets"] = list(assets)
    if batch is not None:
        body["batch"] = batch
    if no_downstream:
        body["downstream"] = False
    found = api_call(lambda: client.start_run(model_id, body))
    click.echo(f"run {found['id']} of model {model_id} (batch {found['batch']}) started")
    if not wait:
        _show(found)
        return
    run_id = int(found["id"])
    while found["state"] == "RUNNING":
        time.sleep(POLL_SECONDS)
        found = api_call(lambda: client.run(model_id, run_id))
    _show(found)
    if found["state"] != "SUCCEEDED":
        raise click.ClickException(f"run {found['id']} {found['state']}")


def _show(found: dict[str, Any]) -> None:
    for asset in found["assets"]:
        why = asset["waitingFor"] or asset["message"] or ""
        click.echo(f"  {asset['name']:<24} job {asset['jobId']:>8}  {asset['status']:<20} {why}")
    click.echo(f"state {found['state']}")
