"""Who may use the console: an API token exchanged for a session cookie, the role policy
of app/security/roles.py applied to that session, and a CSRF token on every state-changing request.

The session needs no server-side state and no shared secret, so it works on every API node
and every gunicorn worker alike: the cookie holds ``<token id>.<expiry>.<mac>``, where the mac
is an HMAC keyed with the token's stored SHA-256 hash, which only the database (and whoever
holds the token) knows. Each request reads the token row again, so revoking the token or
changing its role takes effect on the next click. The CSRF token is a second HMAC with the
same key, bound to the session; before logging in, the login form is protected by a random
value in a cookie that must come back in the form (double submit).

Cookies are HttpOnly, SameSite=Strict, limited to /admin, and Secure when the public URL is
https. The outcome of an action is carried to the next page in a short-lived cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from flask import Flask, abort, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response

from app.security.roles import READ_METHODS, allows, required_role
from app.store import console, tokens
from app.store.database import Database

SESSION_SECONDS = 12 * 3600
SESSION_COOKIE = "jobchain_console"
LOGIN_COOKIE = "jobchain_login"
OUTCOME_COOKIE = "jobchain_outcome"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SECURE = "JOBCHAIN_CONSOLE_SECURE_COOKIES"
MAX_OUTCOME = 600


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    csrf: str

    @property
    def can_act(self) -> bool:
        """Only admins change anything; every other role may look."""
        return allows(self.role, "admin")


def configure(app: Flask, public_url: str) -> None:
    """Secure cookies when the service is served over HTTPS (its public URL says so)."""
    app.config[_SECURE] = public_url.lower().startswith("https://")


# -- every request ------------------------------------------------------------------------


def check_request(db: Database) -> Response | None:
    """Run before every console view: None to go on, else the redirect to the login page.

    Aborts with 403 for a POST without the right CSRF token and for a role below what
    app/security/roles.py requires, with 401 for a non-GET without a session.
    """
    g.console_user = _current_user(db)
    g.console_cookies = []
    if request.method not in READ_METHODS:
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        user = g.console_user
        expected = user.csrf if user else request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(sent, expected):
            abort(403, "missing or wrong CSRF token: reload the page and try again")
    needed = required_role(request.method, request.path)
    if needed is None:
        return None
    if g.console_user is None:
        if request.method in READ_METHODS:
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        abort(401, "log in first")
    if not allows(g.console_user.role, needed):
        abort(403, f"this needs the {needed} role; you are logged in as {g.console_user.role}")
    return None


def csrf_token() -> str:
    """The token forms send back: the session's, or before login the login cookie's."""
    user: ConsoleUser | None = g.get("console_user")
    if user is not None:
        return user.csrf
    if "console_login_nonce" not in g:
        g.console_login_nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        if g.console_login_nonce != request.cookies.get(LOGIN_COOKIE):
            _set_cookie(LOGIN_COOKIE, g.console_login_nonce, 3600)
    nonce: str = g.console_login_nonce
    return nonce


def apply_cookies(response: Response) -> Response:
    """Write the cookies this request decided on (after the view ran)."""
    for name, value, max_age in g.get("console_cookies", []):
        if value is None:
            response.delete_cookie(name, path=COOKIE_PATH)
            continue
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=current_app.config.get(_SECURE, False),
        )
    return response


# -- logging in and out -----------------------------------------------------------------


def log_in(db: Database, secret: str) -> ConsoleUser | None:
    """Start a session for this API token; None if it is unknown or revoked."""
    secret = secret.strip()
    found = tokens.verify(db, secret) if secret else None
    if found is None:
        return None
    key = tokens.hash_token(secret)
    expires = int(time.time()) + SESSION_SECONDS
    _set_cookie(SESSION_COOKIE, _session_value(found.id, expires, key), SESSION_SECONDS)
    _set_cookie(LOGIN_COOKIE, None, 0)
    return ConsoleUser(found.name, found.role, _csrf(found.id, expires, key))


def log_out() -> None:
    _set_cookie(SESSION_COOKIE, None, 0)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path on this site."""
    parts = urlsplit(target or "")
    local = not parts.scheme and not parts.netloc and target and target.startswith("/admin/")
    return target if local and target else url_for("admin.jobs")


# -- the outcome of an action, shown on the next page -------------------------------------


def flash(message: str, kind: str = "ok") -> None:
    _set_cookie(OUTCOME_COOKIE, quote(f"{kind}:{message[:MAX_OUTCOME]}"), 60)


def outcome() -> tuple[str, str] | None:
    """(kind, message) of the last action, once: reading it clears it."""
    raw = request.cookies.get(OUTCOME_COOKIE)
    if not raw:
        return None
    if not any(name == OUTCOME_COOKIE for name, _, _ in g.get("console_cookies", [])):
        _set_cookie(OUTCOME_COOKIE, None, 0)
    kind, _, message = unquote(raw).partition(":")
    return ("error" if kind == "error" else "ok"), message


# -- the signed session -------------------------------------------------------------------


def _current_user(db: Database) -> ConsoleUser | None:
    token_id, expires, mac = _parse(request.cookies.get(SESSION_COOKIE, ""))
    if token_id is None or expires < time.time():
        return None
    found = console.session_token(db, token_id)
    if found is None:  # revoked or deleted
        return None
    key = found["token_hash"]
    if not hmac.compare_digest(mac, _session_value(token_id, expires, key)):
        return None
    return ConsoleUser(found["name"], found["role"], _csrf(token_id, expires, key))


def _parse(value: str) -> tuple[int | None, int, str]:
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None, 0, ""
    return int(parts[0]), int(parts[1]), value


def _session_value(token_id: int, expires: int, key: str) -> str:
    return f"{token_id}.{expires}.{_mac(key, f'session.{token_id}.{expires}')}"


def _csrf(token_id: int, expires: int, key: str) -> str:
    return _mac(key, f"csrf.{token_id}.{expires}")


def _mac(key: str, message: str) -> str:
    return hmac.new(
        key.encode(), f"jobchain-console.{message}".encode(), hashlib.sha256
    ).hexdigest()


def _set_cookie(name: str, value: str | None, max_age: int) -> None:
    cookies: list[tuple[str, str | None, int]] = g.setdefault("console_cookies", [])
    cookies[:] = [c for c in cookies if c[0] != name]
    cookies.append((name, value, max_age))


def context() -> dict[str, Any]:
    """What every console template may use."""
    return {"user": g.get("console_user"), "csrf_token": csrf_token, "outcome": outcome}
