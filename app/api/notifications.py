"""Alert rules under /api/v1/notification-rules (admin only, reads included: a rule holds
webhook URLs and addresses), and the record of their deliveries.

A rule names the event kinds it wants (app/alerts/events.py), a channel (``webhook``: a
URL; ``email``: addresses) and optional filters (job type, target object, schedule,
model).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.alerts.events import KINDS
from app.api.errors import ApiError
from app.api.schemas import EpochDateTime
from app.api.shared import MAX_ID, json_body, printable, runtime
from app.domain.payload import StrictBoolean, unwrap
from app.store import notifications

notifications_api = Blueprint("notifications_api", __name__, url_prefix="/api/v1")

CHANNELS = ("webhook", "email")
_PATH = "/notification-rules"


class RuleInputSchema(Schema):
    """POST body."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(1, 255), printable])
    events = fields.List(
        fields.String(validate=validate.OneOf(KINDS)),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": f"event kinds: {', '.join(KINDS)}"},
    )
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    target = fields.String(
        required=True,
        validate=[validate.Length(1, 2000), printable],
        metadata={"description": "webhook: an http(s) URL; email: comma-separated addresses"},
    )
    jobType = fields.String(attribute="job_type", allow_none=True, validate=validate.Length(1, 64))
    targetObject = fields.String(
        attribute="target_object",
        allow_none=True,
        validate=[validate.Length(1, 255), printable],
        metadata={"description": "exact, or a prefix ending with *"},
    )
    schedule = fields.String(
        allow_none=True,
        validate=[validate.Length(1, 255), printable],
        metadata={"description": "a schedule's name: its fires and the chains it started"},
    )
    model = fields.String(
        allow_none=True,
        validate=[validate.Length(1, 100), printable],
        metadata={"description": "a model's name: its assets' events (late, held, ...)"},
    )
    enabled = StrictBoolean(load_default=True)

    @validates_schema(skip_on_field_errors=False)
    def _target_fits_channel(self, data: dict[str, Any], **_: Any) -> None:
        if "channel" in data and "target" in data:
            problem = target_problem(data["channel"], data["target"])
            if problem:
                raise ValidationError(problem, "target")


class RulePatchSchema(RuleInputSchema):
    """PATCH body: any of the fields; those left out keep their value."""

    name = fields.String(validate=[validate.Length(1, 255), printable])
    events = fields.List(
        fields.String(validate=validate.OneOf(KINDS)), validate=validate.Length(min=1)
    )
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    target = fields.String(validate=[validate.Length(1, 2000), printable])
    enabled = StrictBoolean()


class RuleSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    events = fields.List(fields.String())
    channel = fields.String()
    target = fields.String()
    jobType = fields.String(attribute="job_type", allow_none=True)
    targetObject = fields.String(attribute="target_object", allow_none=True)
    schedule = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    enabled = fields.Boolean()
    activeSince = EpochDateTime(attribute="active_since")
    createdAt = EpochDateTime(attribute="created_at")
    updatedAt = EpochDateTime(attribute="updated_at")


class RuleListSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema))


class DeliverySchema(Schema):
    id = fields.Integer()
    ruleId = fields.Integer(attribute="rule_id")
    rule = fields.String(attribute="rule_name")
    event = fields.String(attribute="event_kind")
    eventKey = fields.String(attribute="event_key")
    status = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    lastError = fields.String(attribute="last_error", allow_none=True)
    nextAttemptAt = EpochDateTime(attribute="next_attempt_at")
    createdAt = EpochDateTime(attribute="created_at")
    deliveredAt = EpochDateTime(attribute="delivered_at", allow_none=True)
    payload = fields.Raw()


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))


def target_problem(channel: str, target: str) -> str | None:
    """Why ``target`` cannot be a ``channel`` target, or None."""
    if channel == "webhook":
        url = urlparse(target)
        if url.scheme not in ("http", "https") or not url.netloc:
            return "must be an http:// or https:// URL"
    if channel == "email":
        addresses = [a.strip() for a in target.split(",")]
        if not all(a and "@" in a and " " not in a for a in addresses):
            return "must be e-mail addresses separated by commas"
    return None


@notifications_api.post(_PATH)
def create_rule() -> tuple[Response, int, dict[str, str]]:
    """Create an alert rule.
    ---
    post:
      requestBody:
        required: true
        content: {application/json: {schema: NotificationRuleInput}}
      responses:
        201: {description: The rule, content: {application/json: {schema: NotificationRule}}}
        400: {description: Invalid rule, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    data = _load(RuleInputSchema())
    try:
        rule_id = notifications.create_rule(runtime().db, data)
    except notifications.NameTaken:
        raise _name_taken(data["name"]) from None
    location = {"Location": f"/api/v1{_PATH}/{rule_id}"}
    return jsonify(RuleSchema().dump(_rule_or_404(rule_id))), 201, location


@notifications_api.get(_PATH)
def list_rules() -> Response:
    """Every alert rule.
    ---
    get:
      responses:
        200: {description: The rules, content: {application/json: {schema: NotificationRuleList}}}
    """
    found = notifications.list_rules(runtime().db)
    return jsonify({"items": RuleSchema(many=True).dump(found)})


@notifications_api.get(f"{_PATH}/<int:rule_id>")
def get_rule(rule_id: int) -> Response:
    """An alert rule.
    ---
    get:
      parameters:
      - {in: path, name: rule_id, required: true, schema: {type: integer}}
      responses:
        200: {description: The rule, content: {application/json: {schema: NotificationRule}}}
        404: {description: No such rule, content: {application/json: {schema: Error}}}
    """
    return jsonify(RuleSchema().dump(_rule_or_404(rule_id)))


@notifications_api.patch(f"{_PATH}/<int:rule_id>")
def update_rule(rule_id: int) -> Response:
    """Change, disable or enable an alert rule (enabled again, it minds events from now on).
    ---
    patch:
      parameters:
      - {in: path, name: rule_id, required: true, schema: {type: integer}}
      requestBody:
        required: true
        content: {application/json: {schema: NotificationRulePatch}}
      responses:
        200: {description: The rule, content: {application/json: {schema: NotificationRule}}}
        400: {description: Invalid change, content: {application/json: {schema: Error}}}
        404: {description: No such rule, content: {application/json: {schema: Error}}}
        409: {description: Name taken, content: {application/json: {schema: Error}}}
    """
    changes = _load(RulePatchSchema())
    current = _rule_or_404(rule_id)
    channel = changes.get("channel", current["channel"])
    problem = target_problem(channel, changes.get("target", current["target"]))
    if problem:
        raise ApiError(400, "invalid_rule", "invalid rule", {"target": [problem]})
    try:
        found = notifications.update_rule(runtime().db, rule_id, changes)
    except notifications.NameTaken:
        raise _name_taken(changes.get("name", "")) from None
    if not found:
        raise _not_found(rule_id)
    return jsonify(RuleSchema().dump(_rule_or_404(rule_id)))


@notifications_api.delete(f"{_PATH}/<int:rule_id>")
def delete_rule(rule_id: int) -> tuple[str, int]:
    """Delete an alert rule and the record of its deliveries.
    ---
    delete:
      parameters:
      - {in: path, name: rule_id, required: true, schema: {type: integer}}
      responses:
        204: {description: Deleted}
        404: {description: No such rule, content: {application/json: {schema: Error}}}
    """
    if rule_id > MAX_ID or not notifications.delete_rule(runtime().db, rule_id):
        raise _not_found(rule_id)
    return "", 204


@notifications_api.get(f"{_PATH}/<int:rule_id>/deliveries")
def list_deliveries(rule_id: int) -> Response:
    """The newest deliveries of a rule, each with its outcome (at most ``limit``, 50).
    ---
    get:
      parameters:
      - {in: path, name: rule_id, required: true, schema: {type: integer}}
      - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 500}}
      responses:
        200:
          description: The deliveries, newest first
          content: {application/json: {schema: NotificationDeliveryList}}
        404: {description: No such rule, content: {application/json: {schema: Error}}}
    """
    _rule_or_404(rule_id)
    raw = request.args.get("limit", str(notifications.RECENT_DELIVERIES))
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ApiError(400, "invalid_query", "invalid query", {"limit": ["must be 1 to 500"]})
    found = notifications.recent_deliveries(runtime().db, rule_id, int(raw))
    return jsonify({"items": DeliverySchema(many=True).dump(found)})


def _load(schema: Schema) -> dict[str, Any]:
    try:
        data: dict[str, Any] = schema.load(unwrap(json_body()))
    except ValidationError as exc:
        raise ApiError(400, "invalid_rule", "invalid rule", exc.normalized_messages()) from None
    return data


def _rule_or_404(rule_id: int) -> dict[str, Any]:
    found = notifications.get_rule(runtime().db, rule_id) if rule_id <= MAX_ID else None
    if found is None:
        raise _not_found(rule_id)
    return found


def _not_found(rule_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no notification rule {rule_id}")


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "name_taken", f"a notification rule named {name!r} already exists")
