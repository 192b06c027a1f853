"""The alerts page (admins only, as the rules API): rules with their channel and filters,
enable, disable and delete, and the latest deliveries with their outcome. Rules are created
with ``jobchain alerts add`` or the API; the page says so."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, url_for

from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.api.shared import MAX_ID
from app.store import notifications


@admin.get("/alerts")
def alert_list() -> Any:
    db = runtime().db
    return page(
        "admin/alerts.html",
        rules=notifications.list_rules(db),
        deliveries=notifications.recent_deliveries(db),
        counts=notifications.delivery_counts(db),
    )


@admin.post("/alerts/<int:rule_id>/enable")
def enable_rule(rule_id: int) -> Any:
    return _set_enabled(rule_id, True)


@admin.post("/alerts/<int:rule_id>/disable")
def disable_rule(rule_id: int) -> Any:
    return _set_enabled(rule_id, False)


@admin.post("/alerts/<int:rule_id>/delete")
def delete_rule(rule_id: int) -> Any:
    if rule_id > MAX_ID or not notifications.delete_rule(runtime().db, rule_id):
        abort(404, f"no alert rule {rule_id}")
    flash(f"Alert rule {rule_id} deleted.", "ok")
    return redirect(url_for("admin.alert_list"), 303)


def _set_enabled(rule_id: int, enabled: bool) -> Any:
    found = rule_id <= MAX_ID and notifications.update_rule(
        runtime().db, rule_id, {"enabled": enabled}
    )
    if not found:
        abort(404, f"no alert rule {rule_id}")
    flash(f"Alert rule {rule_id} {'enabled' if enabled else 'disabled'}.", "ok")
    return redirect(url_for("admin.alert_list", _anchor=f"rule-{rule_id}"), 303)
