"""HTTP job type: make one HTTP request and fail the job unless the status is expected.

Useful as a chain step that triggers a webhook or checks an endpoint. Only a bounded prefix
of the response body is read and stored, so a large response can't bloat the job's result.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

from jobs.context import JobContext, JobFailed
from jobs.registry import job_type

BODY_LIMIT = 4096
"""Bytes of response body kept in the result; longer bodies are stored as truncated text."""
DEFAULT_TIMEOUT = 30.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _parameters(params: dict[str, Any]) -> tuple[str, str, dict[str, str], float, list[int] | None]:
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise JobFailed("parameters.url is required: an http:// or https:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise JobFailed(f"parameters.url must be an http:// or https:// URL, got {url!r}")

    method = params.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise JobFailed(f"parameters.method must be one of {', '.join(sorted(METHODS))}")

    headers = params.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise JobFailed("parameters.headers must be an object of string to string")

    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if not _is_number(timeout) or timeout <= 0:
        raise JobFailed("parameters.timeout must be a number of seconds greater than 0")

    expect = params.get("expectStatus")
    expected: list[int] | None
    if expect is None:
        expected = None
    elif _is_status(expect):
        expected = [expect]
    elif isinstance(expect, list) and expect and all(_is_status(s) for s in expect):
        expected = list(expect)
    else:
        raise JobFailed(
            "parameters.expectStatus must be an HTTP status code (100-599) or a list of them"
        )
    return url, method.upper(), headers, float(timeout), expected


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


@job_type("HTTP", role="admin")
def http(ctx: JobContext) -> Any:
    """Sends one HTTP request (url, method, json, headers, timeout, expectStatus)."""
    import requests  # here, not at import: a worker process loads requests only if it runs one

    url, method, headers, timeout, expected = _parameters(ctx.parameters)
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
