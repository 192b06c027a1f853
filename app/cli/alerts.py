"""``jobchain alerts``: list, add, show, enable, disable and delete notification rules, and
see their deliveries.

Like the other commands these talk to a running service through its API (admin token). A
rule is named by its id or by its name.
"""

from __future__ import annotations

import json
from typing import Any

import click

from app.alerts.events import KINDS
from app.cli.client import ApiClient
from app.cli.shared import api_call


@click.group("alerts")
def alerts() -> None:
    """Alert rules: webhooks and e-mails on failures (docs/operations/monitoring.md)."""


@alerts.command("list")
@click.pass_obj
def list_rules(client: ApiClient) -> None:
    """List alert rules."""
    for rule in api_call(client.alert_rules):
        click.echo(_summary(rule))


@alerts.command()
@click.argument("name")
@click.option(
    "--on",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(KINDS),
    help="An event kind to be told about (repeat for several).",
)
@click.option("--webhook", metavar="URL", help="POST a signed JSON body to this URL.")
@click.option("--email", metavar="ADDRESSES", help="Send an e-mail to these (comma-separated).")
@click.option("--job-type", help="Only jobs of this type.")
@click.option("--target", "target_object", help="Only this targetObject (or a prefix with *).")
@click.option("--schedule", help="Only this schedule's fires and the chains it started.")
@click.option("--model", help="Only this model's assets (late, recovered, held, released).")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.pass_obj
def add(
    client: ApiClient,
    name: str,
    events: tuple[str, ...],
    webhook: str | None,
    email: str | None,
    job_type: str | None,
    target_object: str | None,
    schedule: str | None,
    model: str | None,
    disabled: bool,
) -> None:
    """Create a rule: NAME, the events (--on), and --webhook URL or --email ADDRESSES."""
    if bool(webhook) == bool(email):
        raise click.UsageError("give exactly one of --webhook and --email")
    body: dict[str, Any] = {
        "name": name,
        "events": list(events),
        "channel": "webhook" if webhook else "email",
        "target": webhook or email,
        "enabled": not disabled,
    }
    filters = {
        "jobType": job_type,
        "targetObject": target_object,
        "schedule": schedule,
        "model": model,
    }
    body.update({k: v for k, v in filters.items() if v})
    click.echo(f"added {_summary(api_call(lambda: client.create_alert_rule(body)))}")


@alerts.command()
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--limit", default=10, show_default=True, help="How many deliveries to show.")
@click.pass_obj
def show(client: ApiClient, rule: str, as_json: bool, limit: int) -> None:
    """Show a rule and its latest deliveries with their outcome."""
    rule_id = _resolve(client, rule)
    found = api_call(lambda: client.alert_rule(rule_id))
    sent = api_call(lambda: client.alert_deliveries(rule_id, limit))
    if as_json:
        click.echo(json.dumps({**found, "deliveries": sent}, indent=2))
        return
    click.echo(_summary(found))
    for delivery in sent:
        error = f"  {delivery['lastError']}" if delivery["lastError"] else ""
        click.echo(
            f"  {delivery['createdAt']}  {delivery['event']:<20} {delivery['status']:<9} "
            f"{delivery['attempts']} attempt(s){error}"
        )


@alerts.command()
@click.argument("rule")
@click.pass_obj
def enable(client: ApiClient, rule: str) -> None:
    """Enable a rule: it minds events from now on."""
    _set_enabled(client, rule, True)


@alerts.command()
@click.argument("rule")
@click.pass_obj
def disable(client: ApiClient, rule: str) -> None:
    """Disable a rule (what it owes already is still delivered)."""
    _set_enabled(client, rule, False)


@alerts.command()
@click.argument("rule")
@click.pass_obj
def delete(client: ApiClient, rule: str) -> None:
    """Delete a rule and the record of its deliveries."""
    rule_id = _resolve(client, rule)
    api_call(lambda: client.delete_alert_rule(rule_id))
    click.echo(f"deleted alert rule {rule_id}")


def _set_enabled(client: ApiClient, rule: str, enabled: bool) -> None:
    rule_id = _resolve(client, rule)
    click.echo(_summary(api_call(lambda: client.update_alert_rule(rule_id, {"enabled": enabled}))))


def _resolve(client: ApiClient, rule: str) -> int:
    """An id as given; a name looked up among the rules."""
    if rule.isdigit():
        return int(rule)
    for found in api_call(client.alert_rules):
        if found["name"] == rule:
            return int(found["id"])
    raise click.ClickException(f"no alert rule named {rule!r}")


def _summary(rule: dict[str, Any]) -> str:
    state = "enabled" if rule["enabled"] else "disabled"
    filters = [
        f"{label}={rule[key]}"
        for key, label in (
            ("jobType", "type"),
            ("targetObject", "target"),
            ("schedule", "schedule"),
            ("model", "model"),
        )
        if rule.get(key)
    ]
    return (
        f"{rule['id']:>6}  {rule['name']:<24} {state:<8} {','.join(rule['events'])} -> "
        f"{rule['channel']} {rule['target']}" + (f"  [{' '.join(filters)}]" if filters else "")
    )
