"""Who may use the console: an API token exchanged for a session cookie, the role policy
of app/auth.py applied to that session, and a CSRF token on every state-changing request.

The session (Flask's signed cookie: HttpOnly, SameSite=Strict, path /admin) names the token
by its SHA-256 hash, never the token itself, and every request looks the hash up again, so
revoking the token or changing its role takes effect on the next click. The signing key is
made at start, so a restart ends all console sessions.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, abort, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from app.auth import READ_METHODS, allows, required_role
from app.store import tokens
from app.store.database import Database

SESSION_HOURS = 12
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str

    @property
    def can_act(self) -> bool:
        """Only admins change anything; every other role may look."""
        return allows(self.role, "admin")


def configure_sessions(app: Flask, public_url: str) -> None:
    """Cookie settings of the console's session; Secure when the service is served over
    HTTPS (its public URL says so)."""
    if not app.secret_key:
        app.secret_key = secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_NAME="jobchain_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_SECURE=public_url.lower().startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )


def csrf_token() -> str:
    """This session's CSRF token (made on first use), for forms and fetch calls."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_request(db: Database) -> Response | None:
    """Run before every console view: None to go on, else the redirect to the login page.

    Refuses (aborts with) 403 for a POST without the session's CSRF token and for a role
    below what app/auth.py requires, 401 for a non-GET without a session.
    """
    g.console_user = _current_user(db)
    if request.method not in READ_METHODS:
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        expected = session.get("csrf")
        if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
            abort(403, "missing or wrong CSRF token: reload the page and try again")
    needed = required_role(request.method, request.path)
    if needed is None:
        return None
    user: ConsoleUser | None = g.console_user
    if user is None:
        if request.method in READ_METHODS:
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        abort(401, "log in first")
    if not allows(user.role, needed):
        abort(403, f"this needs the {needed} role; you are logged in as {user.role}")
    return None


def log_in(db: Database, secret: str) -> ConsoleUser | None:
    """Start a session for this API token; None if it is unknown or revoked."""
    found = tokens.verify(db, secret.strip()) if secret.strip() else None
    if found is None:
        return None
    session.clear()  # a fresh session id and CSRF token: no fixation across logins
    session.permanent = True
    session["token"] = tokens.hash_token(secret.strip())
    csrf_token()
    return ConsoleUser(found.name, found.role)


def log_out() -> None:
    session.clear()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path on this site."""
    parts = urlsplit(target or "")
    local = not parts.scheme and not parts.netloc and target and target.startswith("/admin")
    return target if local and target else url_for("admin.jobs")


def _current_user(db: Database) -> ConsoleUser | None:
    digest = session.get("token")
    if not isinstance(digest, str):
        return None
    found = tokens.verify_hash(db, digest)
    if found is None:
        session.pop("token", None)
        return None
    return ConsoleUser(found.name, found.role)
