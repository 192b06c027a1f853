"""``jobchain schedules``: list, add, show, pause, resume and delete cron schedules.

Like the other commands these talk to a running service through its API. A schedule is
named by its id or by its name.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from app.cli.client import ApiClient
from app.cli.shared import api_call


@click.group("schedules")
def schedules() -> None:
    """Cron schedules: each fire time submits the schedule's job."""


@schedules.command("list")
@click.pass_obj
def list_schedules(client: ApiClient) -> None:
    """List schedules with their next fire time and latest chain."""
    for schedule in api_call(client.schedules):
        click.echo(_summary(schedule))


@schedules.command()
@click.argument("file", type=click.File("r"))
@click.option("--paused", is_flag=True, help="Create it paused (resume it later).")
@click.pass_obj
def add(client: ApiClient, file: Any, paused: bool) -> None:
    """Create a schedule from a JSON file ('-' for stdin):
    {"name", "cron", "timezone", "job": ChainedJobInfo, "enabled"}."""
    try:
        body = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    if paused and isinstance(body, dict):
        body["enabled"] = False
    click.echo(f"added {_summary(api_call(lambda: client.create_schedule(body)))}")


@schedules.command()
@click.argument("schedule")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def show(client: ApiClient, schedule: str, as_json: bool) -> None:
    """Show a schedule, its next fire times and its latest chains."""
    found = api_call(lambda: client.schedule(_resolve(client, schedule)))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(_summary(found))
    for at in found["nextFireTimes"]:
        click.echo(f"  next  {_local(at, found['timezone'])}")
    for fire in found["lastChains"]:
        click.echo(f"  fired {_local(fire['fireTime'], found['timezone'])}  {_chain(fire)}")


@schedules.command()
@click.argument("schedule")
@click.pass_obj
def pause(client: ApiClient, schedule: str) -> None:
    """Stop a schedule from firing until it is resumed."""
    _set_enabled(client, schedule, False)


@schedules.command()
@click.argument("schedule")
@click.pass_obj
def resume(client: ApiClient, schedule: str) -> None:
    """Fire a paused schedule again, from its next fire time after now."""
    _set_enabled(client, schedule, True)


@schedules.command()
@click.argument("schedule")
@click.pass_obj
def delete(client: ApiClient, schedule: str) -> None:
    """Delete a schedule (the chains it started are kept)."""
    schedule_id = _resolve(client, schedule)
    api_call(lambda: client.delete_schedule(schedule_id))
    click.echo(f"deleted schedule {schedule_id}")


def _set_enabled(client: ApiClient, schedule: str, enabled: bool) -> None:
    schedule_id = _resolve(client, schedule)
    click.echo(
        _summary(api_call(lambda: client.update_schedule(schedule_id, {"enabled": enabled})))
    )


def _resolve(client: ApiClient, schedule: str) -> int:
    """An id as given; a name looked up among the schedules."""
    if schedule.isdigit():
        return int(schedule)
    for found in api_call(client.schedules):
        if found["name"] == schedule:
            return int(found["id"])
    raise click.ClickException(f"no schedule named {schedule!r}")


def _summary(schedule: dict[str, Any]) -> str:
    state = "enabled" if schedule["enabled"] else "paused"
    last = schedule["lastChains"][0] if schedule["lastChains"] else None
    return (
        f"{schedule['id']:>6}  {schedule['name']:<24} {state:<8} "
        f"{schedule['cron']} ({schedule['timezone']})  "
        f"next {_local(schedule['nextFireAt'], schedule['timezone'])}"
        f"  last {_chain(last) if last else '-'}"
    )


def _local(stamp: str | None, zone: str) -> str:
    """An API time (UTC, ISO 8601) in the schedule's zone, to the second, with the zone:
    ``2024-03-05 02:30:00 CET``."""
    if not stamp:
        return "-"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _chain(fire: dict[str, Any]) -> str:
    if fire["rootJobId"] is None:
        return str(fire["message"])
    return f"job {fire['rootJobId']} {fire['status']}"
