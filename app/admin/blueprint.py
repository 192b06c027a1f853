"""The console's blueprint and what every page shares: access checks, HTML (or JSON) error
pages, live-update fragments, display filters and security headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, render_template, request
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from app.admin import access
from app.api.shared import runtime
from app.domain.statuses import TERMINAL, Status

admin = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Sent by console.js when it fetches a page's live part: the answer is that part only.
FRAGMENT_HEADER = "X-Console-Fetch"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def is_fetch() -> bool:
    return request.headers.get(FRAGMENT_HEADER) is not None


def page(template: str, fragment: str | None = None, status: int = 200, **context: Any) -> Any:
    """Render a page, or only its live part (``fragment``) when console.js asks for it."""
    if fragment is not None and is_fetch():
        return render_template(fragment, **context), status
    return render_template(template, **context), status


@admin.before_request
def _check_access() -> Response | None:
    return access.check_request(runtime().db)


@admin.after_request
def _headers(response: Response) -> Response:
    access.apply_cookies(response)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@admin.errorhandler(HTTPException)
def _error(exc: HTTPException) -> Any:
    """HTML for pages, the API's JSON error shape for console.js calls."""
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    if is_fetch():
        body: dict[str, Any] = {"error": {"code": code, "message": exc.description, "details": {}}}
        return current_app.response_class(json.dumps(body), status, mimetype="application/json")
    return render_template("admin/error.html", status=status, error=exc), status


@admin.route("/<path:_rest>", methods=["GET", "POST"])
def _unknown(_rest: str) -> Any:
    """Unknown console paths get the console's own 404 page."""
    return render_template("admin/error.html", status=404, error=None), 404


@admin.context_processor
def _shared() -> dict[str, Any]:
    return {
        **access.context(),
        "statuses": [s.value for s in Status],
        "terminal": {s.value for s in TERMINAL},
    }


# -- display filters --------------------------------------------------------------------


@admin.app_template_filter("when")
def when(epoch: float | None) -> Markup:
    """A time as <time>: UTC in the page, shown in the browser's zone by console.js with
    the UTC value on hover."""
    if epoch is None:
        return Markup("&ndash;")
    moment = datetime.fromtimestamp(epoch, UTC)
    iso = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{iso}" title="{shown}">{shown}</time>')


@admin.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@admin.app_template_filter("pretty")
def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@admin.app_template_filter("status_badge")
def status_badge(status: str) -> Markup:
    return Markup(f'<span class="badge s-{escape(status)}">{escape(status)}</span>')
