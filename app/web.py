"""jobchain's web application: ``create_app`` builds the Flask app for a runtime: the JSON
API (``app/api``), the console (``app/admin``), the bearer-token check (``app/security``),
the error shape, health and the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, redirect
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import text
from werkzeug.wrappers import Response as WerkzeugResponse

from app.api.errors import register_error_handlers
from app.domain import jsontext
from app.runtime import Runtime
from config import Settings

log = logging.getLogger("jobchain.api")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the app. Without a runtime one is created from settings (or the environment)."""
    rt = runtime or Runtime.create(settings or Settings.from_env())
    app = Flask(__name__)
    app.json = DeepJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["jobchain"] = rt

    from app.admin import install_console
    from app.api.callbacks import integration_api
    from app.api.jobs import jobs_api
    from app.api.joins import joins_api
    from app.api.models import models_api
    from app.api.notifications import notifications_api
    from app.api.openapi import build_spec
    from app.api.schedules import schedules_api
    from app.metrics.endpoint import install_metrics
    from app.security.tokens import install_auth

    app.register_blueprint(jobs_api)
    app.register_blueprint(joins_api)
    app.register_blueprint(schedules_api)
    app.register_blueprint(models_api)
    app.register_blueprint(notifications_api)
    install_console(app)  # /admin: a session cookie instead of a bearer token
    install_metrics(app, rt)  # /metrics: its own token, or loopback only
    register_error_handlers(app)
    # Every request is checked by one policy (app/security/roles.py); seeds
    # JOBCHAIN_API_TOKENS first.
    install_auth(app, rt.db, rt.settings.api_tokens)
    # After the auth check: its request hook must only see authorised requests.
    app.register_blueprint(integration_api)

    # Built on first use, again when job types were registered since (the spec lists them).
    spec: dict[str, Any] = {}
    spec_types: list[tuple[str, ...]] = [()]

    @app.get("/health")
    @app.get("/api/v1/health")
    def health() -> tuple[Response, int]:
        """Whether the database answers.
        ---
        get:
          responses:
            200: {description: "ok: {status: ok, database: ok}"}
            503: {description: "the database does not answer"}
        """
        try:
            with rt.db.read() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unavailable: %s", exc)
            return jsonify({"status": "unavailable", "database": "unavailable"}), 503
        return jsonify({"status": "ok", "database": "ok"}), 200

    @app.get("/")
    def home() -> WerkzeugResponse:
        """A browser opening the service's address lands on the console."""
        return redirect("/admin/", code=302)

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        """No icon, and no 401 for the request every browser makes."""
        return "", 204

    @app.get("/openapi.json")
    @app.get("/api/v1/openapi.json")
    def openapi() -> Response:
        types = tuple(job_type.name for job_type in rt.registry.all())
        if not spec or spec_types[0] != types:
            spec.clear()
            spec.update(build_spec(app))
            spec_types[0] = types
        return jsonify(spec)

    return app


class DeepJSONProvider(DefaultJSONProvider):
    """Flask's JSON, at any depth: a deep job tree (a chain of 1,000 links is 2,000 levels)
    is past what the recursive ``json`` module encodes, so it is encoded in a loop then."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, **kwargs)
        except RecursionError:
            return jsontext.dumps_iteratively(
                obj,
                sort_keys=kwargs.get("sort_keys", self.sort_keys),
                ensure_ascii=kwargs.get("ensure_ascii", self.ensure_ascii),
            )

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsontext.loads(s) if not kwargs else super().loads(s, **kwargs)
