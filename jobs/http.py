"""HTTP job type: make one HTTP request and fail the job unless the status is expected.

Useful as a chain step that triggers a webhook or checks an endpoint. Only a bounded prefix
of the response body is read and stored, so a large response can't bloat the job's result.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError, fields, validate

if TYPE_CHECKING:
    import requests

from jobs.context import JobContext, JobFailed
from jobs.params import MAX_SECONDS, POSITIVE, Number, Parameters, String, StringMap
from jobs.registry import job_type

BODY_LIMIT = 4096
"""Bytes of response body kept in the result; longer bodies are stored as truncated text."""
DEFAULT_TIMEOUT = 30.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class StatusCodes(fields.Field):
    """expectStatus: one HTTP status code or a non-empty list of them, loaded as a list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        codes = value if isinstance(value, list) and value else [value]
        if not all(_is_status(code) for code in codes):
            raise ValidationError("must be an HTTP status code (100-599) or a list of them")
        return list(codes)


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}


METHOD_NAMES = sorted(METHODS) + sorted(m.lower() for m in METHODS)


class Method(String):
    """An HTTP method name in upper or lower case (as requests takes them), loaded in upper
    case. Checked before upper-casing, so "Post" is refused as the OpenAPI enum says."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = str(super()._deserialize(value, attr, data, **kwargs))
        if name not in METHOD_NAMES:
            raise ValidationError(f"must be one of {', '.join(METHOD_NAMES)}")
        return name.upper()


class HttpParameters(Parameters):
    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        error_messages={"invalid": "must be an http:// or https:// URL"},
    )
    method = Method(load_default="GET", metadata={"enum": METHOD_NAMES})
    json = fields.Raw(allow_none=True, metadata={"description": "sent as the JSON body"})
    headers = StringMap()
    timeout = Number(
        load_default=DEFAULT_TIMEOUT,
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_SECONDS),
        **POSITIVE,
    )
    expectStatus = StatusCodes(
        metadata={
            "description": "the status (or statuses) that finish the job; default any 2xx",
            "oneOf": [_STATUS, {"type": "array", "minItems": 1, "items": _STATUS}],
        }
    )


def _read_body(response: requests.Response) -> tuple[Any, bool]:
    """Reads at most BODY_LIMIT bytes; returns (body, truncated). JSON is parsed when the
    response says it is JSON and fits; otherwise the body is text."""
    data = b""
    for chunk in response.iter_content(chunk_size=BODY_LIMIT):
        data += chunk
        if len(data) > BODY_LIMIT:
            break
    truncated = len(data) > BODY_LIMIT
    text = data[:BODY_LIMIT].decode(response.encoding or "utf-8", errors="replace")
    content_type = response.headers.get("Content-Type", "").lower()
    if not truncated and "json" in content_type and text.strip():
        try:
            return json.loads(text), False
        except ValueError:
            pass
    return text, truncated


@job_type("HTTP", role="admin", params=HttpParameters)
def http(ctx: JobContext) -> Any:
    """Sends one HTTP request (url, method, json, headers, timeout, expectStatus)."""
    import requests  # here, not at import: a worker process loads requests only if it runs one

    params = ctx.parameters
    url: str = params["url"]
    method: str = params["method"]
    headers: dict[str, str] = params.get("headers", {})
    timeout: float = params["timeout"]
    expected: list[int] | None = params.get("expectStatus")
    if ctx.should_abort():
        return None

    kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout, "stream": True}
    if ctx.parameters.get("json") is not None:
        kwargs["json"] = ctx.parameters["json"]

    ctx.logger.info("%s %s", method, url)
    ctx.progress(None, f"{method} {url}")
    try:
        with requests.request(method, url, **kwargs) as response:
            body, truncated = _read_body(response)
            status = response.status_code
            ctx.logger.info(
                "HTTP %d %s (%.0f ms)",
                status,
                response.reason or "",
                response.elapsed.total_seconds() * 1000,
            )
    except requests.Timeout as exc:
        raise JobFailed(f"{method} {url} timed out after {timeout:g} s: {exc}") from exc
    except requests.RequestException as exc:
        raise JobFailed(f"{method} {url} failed: {exc}") from exc

    result: dict[str, Any] = {"status": status, "body": body}
    if truncated:
        result["truncated"] = True
    ok = status in expected if expected is not None else 200 <= status < 300
    if not ok:
        raise JobFailed(f"HTTP {status} from {method} {url}", result=result)
    ctx.progress(100, f"HTTP {status} from {method} {url}")
    return result
