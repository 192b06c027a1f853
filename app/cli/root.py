"""The ``jobchain`` command group: where the API is (--url) and with which token (--token),
and every command and command group of this package added to it."""

from __future__ import annotations

import os

import click

from app.cli import automation, locate, model_runs  # noqa: F401  (register `models status|why|run`)
from app.cli.alerts import alerts
from app.cli.client import ApiClient
from app.cli.db import db
from app.cli.deps import deps
from app.cli.jobs import JOB_COMMANDS
from app.cli.models import models
from app.cli.schedules import schedules
from app.cli.service import SERVICE_COMMANDS
from app.cli.tokens import tokens


@click.group()
@click.option(
    "--url",
    envvar="JOBCHAIN_URL",
    default=None,
    help="Base URL of a running jobchain service (env JOBCHAIN_URL); default: where "
    "`jobchain serve` listens with the same JOBCHAIN_HOST and JOBCHAIN_PORT "
    "(http://127.0.0.1:8080 unless set).",
)
@click.option(
    "--token",
    envvar="JOBCHAIN_TOKEN",
    default=None,
    help="API token (env JOBCHAIN_TOKEN); default: the admin token a first start saved "
    "in var/admin-token, of this directory or of the checkout jobchain runs from.",
)
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """jobchain: run chained jobs and track their status."""
    where = locate.service_url(url, os.environ)
    auth = locate.admin_token(token)
    ctx.obj = ApiClient(
        where.value or "", token=auth.value, url_note=where.note, token_note=auth.note
    )
    ctx.call_on_close(ctx.obj.close)


for command in (*SERVICE_COMMANDS, *JOB_COMMANDS, schedules, models, deps, alerts, tokens, db):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="jobchain")
