"""What the API's views share: the request's runtime, the id bound, printable-text
validation and the JSON body, so that each resource module only says what is its own."""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import current_app, request
from marshmallow import ValidationError

from app.api.errors import ApiError
from app.domain import jsontext
from app.domain.payload import Limits
from app.runtime import Runtime

# The largest id a BIGINT column holds; a larger one in a URL names nothing.
MAX_ID = 2**63 - 1


def runtime() -> Runtime:
    """The runtime of the app serving this request (``create_app`` put it there)."""
    rt: Runtime = current_app.extensions["jobchain"]
    return rt


def printable(value: str) -> None:
    """marshmallow validator: PostgreSQL cannot even compare with a string holding NUL, and
    no stored value has one."""
    if not value.isprintable():
        raise ValidationError("must be printable text")


def no_controls(value: str) -> None:
    """marshmallow validator for query strings: no control character (NUL included, which
    PostgreSQL cannot even compare with); other text simply matches nothing stored. The
    OpenAPI document says the same as a pattern."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValidationError("must not contain control characters")


def parse_json(raw: bytes) -> Any:
    """Decode a request body without recursion; 400 ``invalid_json`` if it is not JSON,
    nests deeper than :func:`max_json_depth` or names a key twice in one object (which
    ``json`` would silently settle by keeping the last)."""
    try:
        return jsontext.loads(raw, max_depth=max_json_depth(), unique_keys=True)
    except jsontext.DuplicateKeyError as exc:
        raise ApiError(400, "invalid_json", f"body has a {exc}", {"key": exc.key}) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None


def max_json_depth() -> int:
    """How deeply a request's arrays and objects may nest (Limits.max_json_depth)."""
    return Limits(max_depth=runtime().settings.max_depth).max_json_depth


def json_body() -> Any:
    """The request's body as JSON (400 ``invalid_json`` otherwise)."""
    return parse_json(request.get_data(cache=False))


def job_not_found(job_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no job {job_id}")


def valid_job_id(job_id: int) -> int:
    """``job_id`` if a job could have it; 404 for one beyond any stored id."""
    if job_id > MAX_ID:
        raise job_not_found(job_id)
    return job_id
