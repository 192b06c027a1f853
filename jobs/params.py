"""Declaring a job type's parameters as a marshmallow schema.

A schema passed as ``@job_type("LPG", params=LpgParams)`` is checked at submission (a bad
value is a 400 naming ``parameters.<field>`` of the node), shown by ``GET /job-types`` and
the OpenAPI document, and loaded again when the job runs, so the function sees typed
values with their defaults. JSON has no coercion: the fields here refuse ``"3"`` for 3 and
``1`` for true, which marshmallow's own fields would take.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields

from app.domain.payload import StrictBoolean, StrictInteger, StrictNumber

MAX_SECONDS = 7 * 24 * 3600
# With ``validate.Range(min=0, min_inclusive=False)``: apispec does not document exclusivity.
POSITIVE: dict[str, Any] = {"metadata": {"exclusiveMinimum": True}}


def printable(value: str) -> None:
    """No NUL or other control characters: no database stores NUL in text."""
    if not value.isprintable():
        raise ValidationError("must be printable text")


# JSON's own types, never coerced: the payload's strict fields, one definition for both.
Boolean = StrictBoolean
Integer = StrictInteger
Number = StrictNumber


class String(fields.String):
    """A JSON string (marshmallow's already refuses other types)."""


class StringMap(fields.Dict):
    """An object of string to string, e.g. environment variables or HTTP headers."""

    def __init__(self, **kwargs: Any):
        super().__init__(keys=fields.String(), values=fields.String(), **kwargs)


class Parameters(Schema):
    """Base of a strict parameter schema: an unknown parameter is a typo, refused."""

    class Meta:
        unknown = RAISE


class AnyParameters(Schema):
    """Any object: for types that take no parameters of their own but pass them on."""

    class Meta:
        unknown = INCLUDE


def as_schema(params: type[Schema] | Schema | None) -> Schema | None:
    """A schema class or instance as one instance (shared: marshmallow schemas are
    reusable across threads as long as no one mutates them)."""
    if params is None or isinstance(params, Schema):
        return params
    return params()


def problems(schema: Schema, parameters: Any) -> dict[str, list[str]]:
    """``{"seconds": ["Not a valid number."]}`` for what ``schema`` refuses, paths
    relative to the parameters object (empty when they load)."""
    try:
        schema.load(parameters)
    except ValidationError as exc:
        return _flatten(exc.messages)
    return {}


def _flatten(messages: Any, path: str = "") -> dict[str, list[str]]:
    if isinstance(messages, list):
        return {path: [str(m) for m in messages]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        if isinstance(key, int):
            child = f"{path}[{key}]"
        elif key == "_schema":
            child = path
        else:
            child = f"{path}.{key}" if path else str(key)
        flat.update(_flatten(value, child))
    return flat
