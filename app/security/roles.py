"""Who may call what: bearer tokens with roles, and ONE policy by method and path.

Every call needs ``Authorization: Bearer <token>``. The role a call needs follows from its
method and path alone, not from a flag on each view, so an endpoint added later is covered
the moment it exists, and anything the table does not name is admin-only (deny by default):

=========================================  ===========  =====================================
call                                       role         why
=========================================  ===========  =====================================
GET/HEAD/OPTIONS /health, /openapi.json    (none)       health checks and API docs stay open
  (also under /api/v1)
GET/HEAD/OPTIONS /, /favicon.ico           (none)       a browser at the service's address:
                                                          / redirects to the console
GET /metrics                               (own check)  loopback, or JOBCHAIN_METRICS_TOKEN
                                                          (app/metrics/endpoint.py)
anything under /api/v1/notification-rules  admin        alert targets are an admin's business
  and /admin/alerts
GET, HEAD, OPTIONS anything else           reader       reading jobs, joins, schedules
POST /api/v1/jobs (exactly)                submitter    submitting a chain
POST /api/v1/models/<id>/runs, and         submitter    starting (a run is a chain) and
  .../runs/<id>/cancel                                    cancelling a model's run
POST /api/v1/jobs/<id>/callback, and       integration  external systems reporting back
  /api/v1/models/<id>/assets/<id>/                        (a job's end, a source's new data)
  observations
GET /admin/login, /admin/static/...        (none)       the console's login page and assets
POST /admin/login                          (none)       exchanging a token for a session
POST /admin/logout, /admin/submit/check    reader       ending a session; checking a payload
                                                          (stores nothing)
anything else (cancel, retry, schedule     admin        changes what others submitted
  writes, tokens, any new POST/PUT/...)
=========================================  ===========  =====================================

The admin console (``/admin``) follows the same table, but its credential is a session
cookie obtained at ``/admin/login``, not a bearer header: the console checks it
(app/admin/access.py), so the bearer check (app/security/tokens.py) leaves console paths
alone.

Roles are ranked ``reader < submitter < integration < admin``; a role may do everything the
roles below it may. This module is plain Python (no Flask), so the submit service and the
schedule loop check roles with it too.
"""

from __future__ import annotations

import re

from app.store.tokens import ROLES

__all__ = ["READ_METHODS", "ROLES", "allows", "is_console", "required_role"]

OPEN_PATHS = frozenset(
    {"/health", "/api/v1/health", "/openapi.json", "/api/v1/openapi.json", "/", "/favicon.ico"}
)
# Not a bearer-token path: the endpoint checks its own token (or loopback).
METRICS_PATH = "/metrics"
ADMIN_ONLY_PREFIXES = ("/api/v1/notification-rules", "/admin/alerts")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SUBMIT_PATH = "/api/v1/jobs"
CALLBACK_PATH = re.compile(r"/api/v1/jobs/[^/]+/callback")
OBSERVATION_PATH = re.compile(r"/api/v1/models/[^/]+/assets/[^/]+/observations")
RUN_PATHS = re.compile(r"/api/v1/models/[^/]+/runs(/[^/]+/cancel)?")
CONSOLE_PREFIX = "/admin"
CONSOLE_LOGIN = "/admin/login"
CONSOLE_OPEN = re.compile(r"/admin/(login|static/.+)")
CONSOLE_READER_POSTS = frozenset({"/admin/logout", "/admin/submit/check"})


def required_role(method: str, path: str) -> str | None:
    """The lowest role allowed to make this call; None if it is open to anyone."""
    method = method.upper()
    if method in READ_METHODS and path == METRICS_PATH:
        return None
    if any(path == p or path.startswith(p + "/") for p in ADMIN_ONLY_PREFIXES):
        return "admin"
    if method in READ_METHODS:
        return None if path in OPEN_PATHS or CONSOLE_OPEN.fullmatch(path) else "reader"
    if method == "POST" and (path == SUBMIT_PATH or RUN_PATHS.fullmatch(path)):
        return "submitter"
    if method == "POST" and (CALLBACK_PATH.fullmatch(path) or OBSERVATION_PATH.fullmatch(path)):
        return "integration"
    if method == "POST" and path == CONSOLE_LOGIN:
        return None
    if method == "POST" and path in CONSOLE_READER_POSTS:
        return "reader"
    return "admin"


def is_console(path: str) -> bool:
    """Whether ``path`` belongs to the admin console (session cookie, not bearer token)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def allows(role: str, required: str) -> bool:
    """Whether ``role`` ranks at or above ``required`` (an unknown role allows nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(required)
