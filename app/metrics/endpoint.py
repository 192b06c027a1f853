"""``GET /metrics``: open to loopback clients, or to whoever shows JOBCHAIN_METRICS_TOKEN.

Prometheus usually scrapes from another machine: set a token there (``authorization`` in
the scrape config). Without one the endpoint answers only connections from this machine
(a sidecar, a local agent, a reverse proxy on the same host that does its own checks).
The bearer-token policy of the API (app/security/roles.py) leaves this path to this check:
a metrics token is not an API token and grants nothing else.
"""

from __future__ import annotations

import hmac
import ipaddress
import re

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.errors import error_response
from app.metrics.registry import CALLBACKS, MetricsRegistry
from app.runtime import Runtime
from app.security.tokens import bearer_token

METRICS_PATH = "/metrics"
_CALLBACK = re.compile(r"/api/v1/jobs/[^/]+/callback")


def install_metrics(app: Flask, rt: Runtime) -> MetricsRegistry:
    """Serve ``/metrics`` for ``rt`` and count this app's callbacks."""
    metrics = MetricsRegistry(rt.db, tail_interval=rt.settings.notify_poll_seconds)
    app.extensions["jobchain_metrics"] = metrics
    token = rt.settings.metrics_token

    @app.get(METRICS_PATH)
    def metrics_view() -> Response | tuple[Response, int]:
        """Prometheus metrics (text format); see docs/operations/monitoring.md.
        ---
        get:
          responses:
            200: {description: "Prometheus text format"}
            401: {description: A token is configured and missing or wrong}
            403: {description: No token is configured and the client is not on loopback}
        """
        if token:
            given = bearer_token(request.headers.get("Authorization")) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                response, status = error_response(
                    401, "unauthorized", "a valid metrics token is required"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="jobchain-metrics"'
                return response, status
        elif not _loopback(request.remote_addr):
            return error_response(
                403,
                "forbidden",
                "/metrics is open to loopback only; set JOBCHAIN_METRICS_TOKEN to scrape "
                "from elsewhere",
            )
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.after_request
    def _count_callbacks(response: Response) -> Response:
        if request.method == "POST" and _CALLBACK.fullmatch(request.path):
            if response.status_code < 400:
                CALLBACKS.labels("accepted", "").inc()
            else:
                body = response.get_json(silent=True) or {}
                code = body.get("error", {}).get("code", str(response.status_code))
                CALLBACKS.labels("refused", str(code)[:64]).inc()
        return response

    return metrics


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
