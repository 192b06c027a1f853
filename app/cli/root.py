"""The ``jobchain`` command group: where the API is (--url) and with which token (--token),
and every command and command group of this package added to it."""

from __future__ import annotations

import click

from app.cli import automation, model_runs  # noqa: F401  (register `models status|why|run`)
from app.cli.alerts import alerts
from app.cli.client import ApiClient
from app.cli.db import db
from app.cli.deps import deps
from app.cli.jobs import JOB_COMMANDS
from app.cli.models import models
from app.cli.schedules import schedules
from app.cli.service import SERVICE_COMMANDS
from app.cli.tokens import tokens
from app.security.admin_token import read_admin_token

DEFAULT_URL = "http://127.0.0.1:8080"


@click.group()
@click.option(
    "--url",
    envvar="JOBCHAIN_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of a running jobchain service (env JOBCHAIN_URL).",
)
@click.option(
    "--token",
    envvar="JOBCHAIN_TOKEN",
    default=None,
    help="API token (env JOBCHAIN_TOKEN); default: the admin token a first start saved "
    "in var/admin-token.",
)
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None) -> None:
    """jobchain: run chained jobs and track their status."""
    ctx.obj = ApiClient(url, token=token or read_admin_token())
    ctx.call_on_close(ctx.obj.close)


for command in (*SERVICE_COMMANDS, *JOB_COMMANDS, schedules, models, deps, alerts, tokens, db):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="jobchain")
