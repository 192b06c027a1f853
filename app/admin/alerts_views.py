"""The alerts page (admins only, as the rules API): rules with their channel and filters,
a form to create one, enable, disable and delete, and the latest deliveries with their
outcome.

The form is loaded by the API's own input schema (``RuleInputSchema`` of
app/api/notifications.py) and stored by the same store function as
``POST /api/v1/notification-rules``: a rule the API refuses, the console refuses too, with
each message shown next to its field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, redirect, request, url_for
from marshmallow import ValidationError

from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.alerts.events import KINDS
from app.api.notifications import CHANNELS, RuleInputSchema
from app.api.shared import MAX_ID
from app.store import notifications

# The form's fields are named as the API's JSON fields, so the schema's errors name them.
TEXT_FIELDS = ("name", "channel", "target", "jobType", "targetObject", "schedule", "model")
FIELDS = (*TEXT_FIELDS, "events")
GENERAL = "_form"


@admin.get("/alerts")
def alert_list() -> Any:
    return _page(form={"channel": CHANNELS[0], "events": []}, errors={})


@admin.post("/alerts")
def create_rule() -> Any:
    """Create a rule from the form: 400 with the field's message for a bad rule, 409 for a
    name in use; on success, back to the list with the new rule."""
    form = _form_values()
    try:
        data: dict[str, Any] = RuleInputSchema().load(_rule_body(form))
    except ValidationError as exc:
        return _page(form=form, errors=field_errors(exc.normalized_messages()), status=400)
    try:
        rule_id = notifications.create_rule(runtime().db, data)
    except notifications.NameTaken:
        taken = {"name": [f"a rule named {data['name']!r} already exists"]}
        return _page(form=form, errors=taken, status=409)
    flash(f"Alert rule {data['name']} created.", "ok")
    return redirect(url_for("admin.alert_list", _anchor=f"rule-{rule_id}"), 303)


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


def _page(form: Mapping[str, Any], errors: Mapping[str, list[str]], status: int = 200) -> Any:
    db = runtime().db
    return page(
        "admin/alerts.html",
        status=status,
        rules=notifications.list_rules(db),
        deliveries=notifications.recent_deliveries(db),
        counts=notifications.delivery_counts(db),
        kinds=KINDS,
        channels=CHANNELS,
        form=form,
        errors=errors,
    )


def _form_values() -> dict[str, Any]:
    """What was typed, trimmed, to show again if the rule is refused."""
    values: dict[str, Any] = {f: request.form.get(f, "").strip() for f in TEXT_FIELDS}
    values["events"] = request.form.getlist("events")
    return values


def _rule_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The API's JSON body for this form: a field left blank is left out (a required one is
    then "Missing data for required field.", an optional filter means "any")."""
    body: dict[str, Any] = {f: form[f] for f in TEXT_FIELDS if form[f]}
    if form["events"]:
        body["events"] = list(form["events"])
    return body


def field_errors(messages: Any) -> dict[str, list[str]]:
    """marshmallow's messages as one list of text per form field (an element's message, as
    an unknown event kind's, is its field's); any other message is the form's."""
    errors: dict[str, list[str]] = {}
    found = messages.items() if isinstance(messages, Mapping) else [(GENERAL, messages)]
    for field, texts in found:
        key = str(field) if field in FIELDS else GENERAL
        errors.setdefault(key, []).extend(_texts(texts))
    return errors


def _texts(found: Any) -> list[str]:
    if isinstance(found, str):
        return [found]
    if isinstance(found, Mapping):
        return [text for value in found.values() for text in _texts(value)]
    if isinstance(found, list | tuple):
        return [text for value in found for text in _texts(value)]
    return [str(found)]
