"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from app.store.database import DatabaseUnavailable, limit_wait, reset_wait

log = logging.getLogger("jobchain.api")

# When a client should try again after a 503 for a busy or unreachable database.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> tuple[Response, int]:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return jsonify(body), status


def register_error_handlers(app: Flask) -> None:
    """Map every failure to the error shape; a request waits only briefly for the database.

    Background threads may retry a locked or unreachable database for a minute; a client
    is better served by a prompt 503 with Retry-After than by a request that hangs.
    """

    settings = app.extensions["jobchain"].settings

    @app.before_request
    def _bound_database_wait() -> None:
        g.jobchain_db_wait = limit_wait(settings.request_db_wait_seconds)

    @app.teardown_request
    def _restore_database_wait(_exc: BaseException | None) -> None:
        token = g.pop("jobchain_db_wait", None)
        if token is not None:
            reset_wait(token)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        response, status = error_response(exc.code or 500, code, exc.description or exc.name)
        # Keep the exception's own headers (Allow on a 405 is required by HTTP).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(DatabaseUnavailable)
    def _unavailable(exc: DatabaseUnavailable) -> tuple[Response, int]:
        log.warning("answering 503: %s", exc)
        response, status = error_response(
            503, "database_unavailable", "the database is busy or unreachable; try again later"
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
