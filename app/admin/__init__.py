"""The admin console at /admin: server-rendered pages over the store, for operators.

Pages: jobs (filtered, keyset-paginated, live), a chain (tree, joins, timeline, live), a
job (history, log, actions), submit (check and preview before storing), schedules, models
(a model's dependency graph, an asset's dependencies added and deleted) and alerts (admins
only).
"""

from __future__ import annotations

from flask import Flask

# The view modules add their routes to the blueprint when imported.
from app.admin import (
    alerts_views,
    chain_views,
    jobs_views,
    login_views,
    models_views,
    schedules_views,
    submit_views,
)
from app.admin.access import configure
from app.admin.blueprint import admin

VIEWS = (
    alerts_views,
    chain_views,
    jobs_views,
    login_views,
    models_views,
    schedules_views,
    submit_views,
)


def install_console(app: Flask) -> None:
    """Serve the console under /admin (call before the app handles its first request)."""
    configure(app, app.extensions["jobchain"].settings.public_url)
    app.register_blueprint(admin)
