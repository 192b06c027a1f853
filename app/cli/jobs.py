"""The job commands of ``jobchain``: submit (and wait), status, cancel, retry, log, events,
list and job-types, each one call (or a few) to a running service's API."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from app.cli.client import ApiClient
from app.cli.shared import UpperCaseChoice, api_call
from app.domain import jsontext
from app.domain.statuses import TERMINAL, Status

# ``submit --wait`` exit codes, so scripts can tell a failed chain from a slow one.
EXIT_CHAIN_FAILED = 1
EXIT_WAIT_TIMEOUT = 3


class WaitTimeout(click.ClickException):
    exit_code = EXIT_WAIT_TIMEOUT


@click.command()
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
        payload = jsontext.loads(file.read())
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    job = api_call(lambda: client.submit(payload))
    click.echo(f"submitted job {job['id']} ({job['targetObject']}): {job['status']}")
    if wait:
        tree = _wait_for_chain(client, job["id"], timeout)
        _print_tree(tree)
        if any(node["status"] != Status.FINISHED for node in _nodes(tree)):
            sys.exit(EXIT_CHAIN_FAILED)


@click.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def status(client: ApiClient, job_id: int, as_json: bool) -> None:
    """Show a job and its chain below it."""
    tree = api_call(lambda: client.tree(job_id))
    if as_json:
        try:
            click.echo(json.dumps(tree, indent=2))
        except RecursionError:  # too deep to indent: the same JSON on one line
            click.echo(jsontext.dumps_iteratively(tree))
    else:
        _print_tree(tree)


@click.command()
@click.argument("job_id", type=int)
@click.pass_obj
def cancel(client: ApiClient, job_id: int) -> None:
    """Cancel a job and everything below it that has not started."""
    job = api_call(lambda: client.cancel(job_id))
    suffix = " (stop requested)" if job["status"] == "PROCESSING" else ""
    click.echo(f"job {job_id}: {job['status']}{suffix}")


@click.command()
@click.argument("job_id", type=int)
@click.pass_obj
def retry(client: ApiClient, job_id: int) -> None:
    """Run a FAILED or CANCELLED job again; the chain continues after it."""
    job = api_call(lambda: client.retry(job_id))
    # The job may already be running again by the time the answer arrives.
    click.echo(f"job {job_id}: retried, now {job['status']}")


@click.command("log")
@click.argument("job_id", type=int)
@click.pass_obj
def show_log(client: ApiClient, job_id: int) -> None:
    """Print the tail of a job's log."""
    entry = api_call(lambda: client.log(job_id))
    if entry["droppedBytes"]:
        click.echo(f"... ({entry['droppedBytes']} earlier bytes dropped)")
    for line in entry["lines"]:
        click.echo(line)
    if not entry["lines"]:
        click.echo(f"no log lines for job {job_id}")


@click.command()
@click.argument("job_id", type=int)
@click.option(
    "--all", "everything", is_flag=True, help="Also internal moves (a worker's hand-back)."
)
@click.pass_obj
def events(client: ApiClient, job_id: int, everything: bool) -> None:
    """Print the status changes of a job (its status history)."""
    for event in api_call(lambda: client.events(job_id)):
        if event.get("internal") and not everything:
            continue
        click.echo(
            f"{event['at']}  {event['fromStatus'] or '-':>22} -> "
            f"{event['toStatus']:<22} {event['reason']}"
        )


@click.command("list")
@click.option(
    "--status",
    type=UpperCaseChoice([s.value for s in Status]),
    default=None,
    help="Only jobs in this status.",
)
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_obj
def list_jobs(client: ApiClient, status: str | None, limit: int) -> None:
    """List the newest jobs."""
    page = api_call(lambda: client.jobs(status=status, limit=limit))
    for job in page["items"]:
        click.echo(
            f"{job['id']:>8}  {job['status']:<22} {job['targetObject']:<30} {job['message'] or ''}"
        )


@click.command("job-types")
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


MAX_INDENT = 32


def _print_tree(tree: dict[str, Any]) -> None:
    """One line per job, children indented under their parent (in a loop: trees are deep)."""
    stack: list[tuple[dict[str, Any], int]] = [(tree, 0)]
    while stack:
        node, indent = stack.pop()
        notes = []
        if node["status"] == Status.PROCESSING and node.get("progress") is not None:
            notes.append(f"{node['progress']:.0f}%")
        if node.get("attempt", 0) > 1:
            notes.append(f"attempt {node['attempt']}")
        if node.get("message"):
            notes.append(str(node["message"]))
        extra = f"  {'  '.join(notes)}" if notes else ""
        # Past MAX_INDENT levels the depth is written out, not drawn: a 1,000-link chain
        # would otherwise push its last lines 2,000 columns to the right.
        pad = "  " * indent if indent <= MAX_INDENT else f"{'  ' * MAX_INDENT}[{indent}] "
        click.echo(f"{pad}{node['id']:>6} {node['status']:<22} {node['targetObject']}{extra}")
        stack.extend((child, indent + 1) for child in reversed(node.get("nextJobs", [])))


JOB_COMMANDS = (submit, status, cancel, retry, show_log, events, list_jobs, job_types)
