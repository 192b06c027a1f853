"""``jobchain models status`` and ``jobchain models why``: declarative automation as the
API shows it (docs/automation.md).

``status`` is a table of a model's assets: status (FRESH, STALE, MISSING, with LATE and
HELD markers), lag, next deadline (local time, to the second, with its zone) and causes.
``why`` prints an asset's last evaluation by a reconciliation tick (each condition ✓ or ✗
with its value, and the reason) and its last refreshes with the reason each ran.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from app.cli.client import ApiClient
from app.cli.models import models, resolve_model
from app.cli.shared import UpperCaseChoice, api_call

STATUSES = ["MISSING", "STALE", "FRESH"]
NONE = "\u2013"  # an en dash


@models.command("status")
@click.argument("model")
@click.option("--status", type=UpperCaseChoice(STATUSES), default=None, help="Only these.")
@click.option("--late", is_flag=True, help="Only assets late against their policy.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def status(client: ApiClient, model: str, status: str | None, late: bool, as_json: bool) -> None:
    """A table of the model's assets: status, lag, next deadline and cause."""
    model_id = resolve_model(client, model)
    late_only = "true" if late else None
    assets = api_call(lambda: client.assets(model_id, status=status, late=late_only))
    if as_json:
        click.echo(json.dumps(assets, indent=2))
        return
    if not assets:
        click.echo("no assets" + (" match" if status or late else ""))
        return
    now = datetime.now().astimezone()
    rows = [("ASSET", "STATUS", "LAG", "NEXT DEADLINE", "CAUSE")]
    rows += [
        (
            a["name"],
            status_text(a),
            lag_text(a, now),
            local_time(a.get("nextDeadline")),
            causes_text(a.get("causes") or []),
        )
        for a in assets
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


@models.command("why")
@click.argument("model")
@click.argument("asset")
@click.option("--refreshes", "count", default=5, show_default=True, help="How many refreshes.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_obj
def why(client: ApiClient, model: str, asset: str, count: int, as_json: bool) -> None:
    """Why an asset did or didn't run: its last evaluation's conditions and its last
    refreshes with the reason each ran."""
    model_id = resolve_model(client, model)
    found = find_asset(client, model_id, asset)
    asset_id = int(found["id"])
    evaluations = api_call(lambda: client.asset_evaluations(model_id, asset_id, 1))
    refreshes = api_call(lambda: client.asset_refreshes(model_id, asset_id, max(1, count)))
    if as_json:
        body = {"asset": found, "evaluation": next(iter(evaluations), None)}
        click.echo(json.dumps({**body, "refreshes": refreshes}, indent=2))
        return
    for line in explain(found, next(iter(evaluations), None), refreshes):
        click.echo(line)


def find_asset(client: ApiClient, model_id: int, asset: str) -> dict[str, Any]:
    """The asset named ``asset`` (or with that id)."""
    assets = api_call(lambda: client.assets(model_id))
    for found in assets:
        if found["name"] == asset:
            return found
    for found in assets:
        if asset.isdigit() and int(found["id"]) == int(asset):
            return found
    raise click.ClickException(f"model {model_id} has no asset {asset!r}")


def explain(
    asset: dict[str, Any], evaluation: dict[str, Any] | None, refreshes: list[dict[str, Any]]
) -> list[str]:
    """``why``'s lines."""
    lines = [f"{asset['name']}: {status_text(asset)}"]
    if asset.get("causes"):
        lines[0] += f" ({causes_text(asset['causes'])})"
    lines.append(f"  {declared_text(asset)}")
    if asset.get("held"):
        lines.append(f"  held after failed runs: {asset.get('heldError') or 'no error given'}")
    if evaluation is None:
        lines.append("no evaluation yet: no reconciliation tick has looked at it")
    else:
        tree = evaluation.get("conditions") or {}
        verdict = "requested a refresh" if evaluation["requested"] else "did not request one"
        lines.append(
            f"last evaluation {local_time(evaluation['at'])} (tick {evaluation['tickId']}): "
            f"{verdict}"
        )
        if tree.get("reason"):
            lines.append(f"  reason: {tree['reason']}")
        for condition in tree.get("conditions") or []:
            lines.append(f"  {condition_text(condition)}")
    if not refreshes:
        lines.append("no refreshes yet")
        return lines
    lines.append("last refreshes:")
    for r in refreshes:
        version = f"  data {r['dataVersion']}" if r.get("dataVersion") else ""
        lines.append(
            f"  job {r['jobId']}  run {r['runId']}  {r.get('status') or 'purged'}  "
            f"{local_time(r.get('finishedAt') or r.get('startedAt'))}{version}"
        )
        lines.append(f"      {r.get('reason') or 'run by hand (or by a cron)'}")
    return lines


def status_text(asset: dict[str, Any]) -> str:
    """FRESH, STALE or MISSING, then LATE and HELD when they apply."""
    markers = [asset.get("status") or "?"]
    if asset.get("late"):
        markers.append(f"LATE {span(asset.get('lateBy') or 0)}")
    if asset.get("held"):
        markers.append("HELD")
    return " ".join(markers)


def causes_text(causes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['cause']} {c['asset']}" for c in causes)


def declared_text(asset: dict[str, Any]) -> str:
    parts = [f"{asset.get('kind', 'job')}, automation {asset.get('automation', 'off')}"]
    policy = asset.get("freshness")
    if policy:
        text = f"maximum lag {span(float(policy['maximumLagMinutes']) * 60)}"
        if policy.get("cronSchedule"):
            zone = policy.get("timezone") or "UTC"
            text += f" by each cron tick {policy['cronSchedule']} ({zone})"
        parts.append(text)
    if asset.get("codeVersion"):
        parts.append(f"code version {asset['codeVersion']}")
    if asset.get("dataVersion"):
        parts.append(f"data version {asset['dataVersion']}")
    return "; ".join(parts)


def lag_text(asset: dict[str, Any], now: datetime) -> str:
    moment = parse_time(asset.get("currentDataTime"))
    if moment is None:
        return NONE
    return span(max(0.0, (now - moment).total_seconds()))


def condition_text(condition: dict[str, Any]) -> str:
    """``✓ not held: no``: a condition's mark, name and value."""
    mark = "✓" if condition.get("passed") else "✗"
    text = f"{mark} {condition.get('condition', '?')}"
    if "status" in condition:
        value = condition["status"]
        if condition.get("causes"):
            value += f" ({causes_text(condition['causes'])})"
    elif "value" in condition:
        value = value_text(condition["value"])
    else:
        return text
    return f"{text}: {value}"


def value_text(value: Any) -> str:
    """A condition's value: yes/no, a freshness policy's figures in words, or as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return NONE
    if not isinstance(value, dict):
        return str(value)
    if "maximumLagSeconds" in value:
        return policy_text(value)
    return ", ".join(f"{key} {value_text(item)}" for key, item in value.items())


def policy_text(value: dict[str, Any]) -> str:
    """``lag 12 s of at most 2 min; deadline ...; due at ...; late``."""
    lag = value.get("lagSeconds")
    shown = "no new data waiting" if lag is None else f"lag {span(float(lag))}"
    parts = [f"{shown} of at most {span(float(value['maximumLagSeconds']))}"]
    for key, label in (("deadline", "deadline"), ("dueAt", "due at")):
        if value.get(key) is not None:
            parts.append(f"{label} {local_time(value[key])}")
    parts.append("late" if value.get("late") else "not late")
    return "; ".join(parts)


def parse_time(value: Any) -> datetime | None:
    """The API's ``...Z`` times, or epoch seconds (in an evaluation's values)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).astimezone()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()


def local_time(value: Any) -> str:
    """Local time to the second, with the zone: ``2026-11-22 14:26:51 CET``."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or moment.strftime("%z"))


def span(seconds: float) -> str:
    """12 s, 2 min 5 s, 3 h 10 min, 2 d 4 h."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
