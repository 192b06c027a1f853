"""The jobs page's query string: validated into a store query, never trusted.

Empty form fields count as absent. Anything else that does not parse is a 400 that names
the field, so a hand-edited URL never reaches the database as garbage (or causes a 500).
Times arrive as ``datetime-local`` values in the browser's time zone, named by ``tz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.datastructures import MultiDict

from app.api.shared import MAX_ID
from app.domain.statuses import Status
from app.store.console import JobQuery

PAGE_SIZE = 50


class InvalidFilter(Exception):
    def __init__(self, details: dict[str, list[str]]):
        super().__init__("invalid filter")
        self.details = details


def _printable(value: str) -> None:
    if not value.isprintable():
        raise ValidationError("must be printable text")


class JobFilterSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # e.g. a cache-busting parameter; every used field is validated

    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    type = fields.String(validate=[validate.Length(max=64), _printable])
    target = fields.String(validate=[validate.Length(max=255), _printable])
    q = fields.String(validate=[validate.Length(max=200), _printable])
    since = fields.NaiveDateTime()
    until = fields.NaiveDateTime()
    tz = fields.String(load_default="UTC", validate=validate.Length(max=64))
    before = fields.Integer(validate=validate.Range(1, MAX_ID))
    limit = fields.Integer(load_default=PAGE_SIZE, validate=validate.Range(1, 500))

    @validates_schema
    def _zone(self, data: dict[str, Any], **_: Any) -> None:
        try:
            ZoneInfo(data["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("unknown time zone", "tz") from None


@dataclass(frozen=True)
class JobFilter:
    query: JobQuery
    before: int | None
    limit: int
    # The form values as given (for re-filling the form and building links).
    form: dict[str, str]


def parse(args: MultiDict[str, str]) -> JobFilter:
    given = {k: v.strip() for k, v in args.items() if v.strip()}
    try:
        data = JobFilterSchema().load(given)
    except ValidationError as exc:
        raise InvalidFilter(exc.normalized_messages()) from None
    zone = ZoneInfo(data["tz"])
    try:
        since = _epoch(data.get("since"), zone)
        until = _epoch(data.get("until"), zone)
    except (OverflowError, ValueError, OSError):
        raise InvalidFilter({"since": ["out of range"]}) from None
    if since is not None and until is not None and until < since:
        raise InvalidFilter({"until": ["must not be before since"]})
    query = JobQuery(
        status=data.get("status"),
        job_type=data.get("type"),
        target_object=data.get("target"),
        text=data.get("q"),
        since=since,
        until=until,
    )
    form = {k: v for k, v in given.items() if k in JobFilterSchema().fields and k != "before"}
    return JobFilter(query, data.get("before"), data["limit"], form)


def _epoch(value: datetime | None, zone: ZoneInfo) -> float | None:
    return None if value is None else value.replace(tzinfo=zone).timestamp()
