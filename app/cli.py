"""The ``jobchain`` command: ``serve`` runs the service; the rest talk to its API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from app.cli_db import db
from app.cli_schedules import schedules
from app.cli_support import api_call
from app.cli_tokens import tokens
from app.client import ApiClient
from app.security.tokens import read_admin_token
from app.statuses import TERMINAL, Status
from config import Settings

DEFAULT_URL = "http://127.0.0.1:8080"
# ``submit --wait`` exit codes, so scripts can tell a failed chain from a slow one.
EXIT_CHAIN_FAILED = 1
EXIT_WAIT_TIMEOUT = 3


class WaitTimeout(click.ClickException):
    exit_code = EXIT_WAIT_TIMEOUT


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


cli.add_command(schedules)
cli.add_command(tokens)
cli.add_command(db)


@cli.command()
@click.option("--host", envvar="JOBCHAIN_HOST", default=None, help="Listen address.")
@click.option("--port", envvar="JOBCHAIN_PORT", type=int, default=None, help="Listen port.")
@click.option(
    "--workers",
    envvar="JOBCHAIN_WORKERS",
    type=int,
    default=None,
    help="Worker threads running jobs.",
)
@click.option(
    "--database-url",
    envvar="JOBCHAIN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL; default sqlite:///var/jobchain.db.",
)
def serve(
    host: str | None, port: int | None, workers: int | None, database_url: str | None
) -> None:
    """Start the API, the workers and housekeeping in this process."""
    from app.server import StartupError
    from app.server import serve as run_server

    settings = Settings.from_env(host=host, port=port, workers=workers, database_url=database_url)
    try:
        run_server(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option(
    "--workers", envvar="JOBCHAIN_WORKERS", type=int, default=None, help="Worker threads."
)
@click.option(
    "--database-url",
    envvar="JOBCHAIN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db.",
)
def worker(workers: int | None, database_url: str | None) -> None:
    """Run jobs (and housekeeping and schedules) without an API; run as many as you like."""
    from app.server import StartupError
    from app.worker_process import run_worker

    settings = Settings.from_env(workers=workers, database_url=database_url)
    try:
        run_worker(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.argument("file", type=click.File("r"))
@click.option("--wait", is_flag=True, help="Wait until the whole chain has ended.")
@click.option(
    "--timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@click.pass_obj
def submit(client: ApiClient, file: Any, wait: bool, timeout: float) -> None:
    """Submit a ChainedJobInfo JSON file ('-' for stdin).

    With --wait, print the finished tree and exit 0 if every job FINISHED, 1 if any did
    not (failed, skipped or cancelled), 3 if the chain was still running at --timeout.
    """
    try:
        payload = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    job = api_call(lambda: client.submit(payload))
    click.echo(f"submitted job {job['id']} ({job['targetObject']}): {job['status']}")
    if wait:
        tree = _wait_for_chain(client, job["id"], timeout)
        _print_tree(tree)
        if any(node["status"] != Status.FINISHED for node in _nodes(tree)):
            sys.exit(EXIT_CHAIN_FAILED)


@cli.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def status(client: ApiClient, job_id: int, as_json: bool) -> None:
    """Show a job and its chain below it."""
    tree = api_call(lambda: client.tree(job_id))
    if as_json:
        click.echo(json.dumps(tree, indent=2))
    else:
        _print_tree(tree)


@cli.command()
@click.argument("job_id", type=int)
@click.pass_obj
def cancel(client: ApiClient, job_id: int) -> None:
    """Cancel a job and everything below it that has not started."""
    job = api_call(lambda: client.cancel(job_id))
    suffix = " (stop requested)" if job["status"] == "PROCESSING" else ""
    click.echo(f"job {job_id}: {job['status']}{suffix}")


@cli.command()
@click.argument("job_id", type=int)
@click.pass_obj
def retry(client: ApiClient, job_id: int) -> None:
    """Run a FAILED or CANCELLED job again; the chain continues after it."""
    job = api_call(lambda: client.retry(job_id))
    # The job may already be running again by the time the answer arrives.
    click.echo(f"job {job_id}: retried, now {job['status']}")


@cli.command("log")
@click.argument("job_id", type=int)
@click.pass_obj
def show_log(client: ApiClient, job_id: int) -> None:
    """Print the tail of a job's log."""
    entry = api_call(lambda: client.log(job_id))
    if entry["droppedBytes"]:
        click.echo(f"... ({entry['droppedBytes']} earlier bytes dropped)")
    for line in entry["lines"]:
        click.echo(line)


@cli.command()
@click.argument("job_id", type=int)
@click.pass_obj
def events(client: ApiClient, job_id: int) -> None:
    """Print every status change of a job."""
    for event in api_call(lambda: client.events(job_id)):
        click.echo(
            f"{event['at']}  {event['fromStatus'] or '-':>22} -> "
            f"{event['toStatus']:<22} {event['reason']}"
        )


@cli.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in Status], case_sensitive=False),
    default=None,
    help="Only jobs in this status.",
)
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_obj
def list_jobs(client: ApiClient, status: str | None, limit: int) -> None:
    """List the newest jobs."""
    page = api_call(lambda: client.jobs(status=status.upper() if status else None, limit=limit))
    for job in page["items"]:
        click.echo(
            f"{job['id']:>8}  {job['status']:<22} {job['targetObject']:<30} {job['message'] or ''}"
        )


@cli.command("job-types")
@click.pass_obj
def job_types(client: ApiClient) -> None:
    """List the job types the service knows."""
    for job_type in api_call(client.job_types):
        click.echo(f"{job_type['name']:<12} {job_type['description']}")


def _nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    stack, out = [tree], []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.get("nextJobs", []))
    return out


def _wait_for_chain(client: ApiClient, job_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        tree = api_call(lambda: client.tree(job_id))
        if all(node["status"] in TERMINAL for node in _nodes(tree)):
            return tree
        if time.monotonic() > deadline:
            raise WaitTimeout(f"chain {job_id} still running after {timeout:g} s")
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def _print_tree(tree: dict[str, Any], indent: int = 0) -> None:
    """One line per job, children indented under their parent."""
    notes = []
    if tree["status"] == Status.PROCESSING and tree.get("progress") is not None:
        notes.append(f"{tree['progress']:.0f}%")
    if tree.get("attempt", 0) > 1:
        notes.append(f"attempt {tree['attempt']}")
    if tree.get("message"):
        notes.append(str(tree["message"]))
    extra = f"  {'  '.join(notes)}" if notes else ""
    click.echo(f"{'  ' * indent}{tree['id']:>6} {tree['status']:<22} {tree['targetObject']}{extra}")
    for child in tree.get("nextJobs", []):
        _print_tree(child, indent + 1)


def main() -> None:
    cli(prog_name="jobchain")


if __name__ == "__main__":
    main()
