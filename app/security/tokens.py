"""Bearer tokens on the API: checking ``Authorization: Bearer <token>`` on every request
against the role the call needs (``app/security/roles.py``), describing that in OpenAPI, and
the admin token a first start creates. 401 (with ``WWW-Authenticate: Bearer``) means no valid
token: missing, unknown or revoked; 403 means a valid token whose role is too low, and names
the role needed. A path no route matches is 404 for every caller, before any check. The
tokens themselves are stored by ``app/store/tokens.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import NotFound

from app.api.errors import error_response
from app.security.roles import allows, is_console, required_role
from app.store import tokens
from app.store.database import Database
from app.store.tokens import ROLES, ApiToken

log = logging.getLogger("jobchain.auth")

# Written by `jobchain serve` on a first start, read by the CLI when no token is given.
# How long a verified token is trusted without asking the database again: a busy client
# costs one query per second, and a revocation takes effect within this time.
CACHE_SECONDS = 1.0
_CACHE_MAX = 10_000
_REALM = 'Bearer realm="jobchain"'
_OPENAPI_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenVerifier:
    """Checks secrets against the store, remembering valid ones for ``ttl`` seconds.

    Only positive answers are cached (keyed by hash, never by the secret), so a token
    created by the CLI works at once and a revoked one stops working within ``ttl``.
    """

    def __init__(
        self,
        db: Database,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, ApiToken]] = {}
        self._lock = threading.Lock()

    def verify(self, secret: str) -> ApiToken | None:
        digest = tokens.hash_token(secret)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = tokens.verify_hash(self.db, digest)
        with self._lock:
            if found is None:
                self._cache.pop(digest, None)
            else:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[digest] = (now + self.ttl, found)
        return found


def install_auth(app: Flask, db: Database, seeds: Iterable[str]) -> None:
    """Seed the environment's tokens, then check every request before any view runs.

    Raises TokenConfigError for a malformed JOBCHAIN_API_TOKENS (serve reports it cleanly).
    """
    for token in tokens.seed(db, seeds):
        if not token.active:
            log.warning("token %d (%s) from JOBCHAIN_API_TOKENS is revoked", token.id, token.name)
    verifier = TokenVerifier(db)
    app.extensions["jobchain_auth"] = verifier

    @app.before_request
    def _authorize() -> tuple[Response, int] | None:
        if is_console(request.path):
            return None  # the console applies this policy to its session (app/admin/access.py)
        if isinstance(request.routing_exception, NotFound):
            # No route has this path (for any method): 404 for every caller, token or none,
            # not a 403 naming a role for something that does not exist. A known path with
            # the wrong method (405) is still checked first, as before.
            return None
        return authorize(
            verifier, request.method, request.path, request.headers.get("Authorization")
        )


def authorize(
    verifier: TokenVerifier, method: str, path: str, authorization: str | None
) -> tuple[Response, int] | None:
    """None if the call may proceed (the token is then in ``g.api_token``), else the error."""
    required = required_role(method, path)
    if required is None:
        return None
    secret = bearer_token(authorization)
    if secret is None:
        return _denied(
            401,
            "missing_token",
            "this call needs an 'Authorization: Bearer <token>' header",
            _REALM,
        )
    token = verifier.verify(secret)
    if token is None:
        return _denied(
            401,
            "invalid_token",
            "the bearer token is unknown or revoked",
            f'{_REALM}, error="invalid_token"',
        )
    g.api_token = token
    if not allows(token.role, required):
        return _denied(
            403,
            "insufficient_role",
            f"{method} {path} needs the {required} role; this token has {token.role}",
            f'{_REALM}, error="insufficient_scope"',
            {"requiredRole": required, "role": token.role},
        )
    return None


def _denied(
    status: int,
    code: str,
    message: str,
    challenge: str,
    details: dict[str, object] | None = None,
) -> tuple[Response, int]:
    response, status = error_response(status, code, message, details)
    response.headers["WWW-Authenticate"] = challenge
    return response, status


def document_security(document: dict[str, Any]) -> None:
    """Add the bearer scheme to an OpenAPI document: each operation gets the role this
    policy requires (``x-required-role``) and its 401/403 answers; open ones get none."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": f"An API token; roles, lowest first: {', '.join(ROLES)}",
    }
    document["security"] = [{"bearerAuth": []}]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _OPENAPI_METHODS or not isinstance(operation, dict):
                continue
            role = required_role(method, path)
            if role is None:
                operation["security"] = []
                continue
            operation["x-required-role"] = role
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "No valid bearer token", "content": error})
            if role != ROLES[0]:
                responses.setdefault(
                    "403", {"description": f"The token's role is below {role}", "content": error}
                )
