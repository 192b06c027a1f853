"""jobchain: submit a tree of jobs; each starts when its parent ends.

The packages, from the bottom up (each package's docstring says what it may import):
``store`` (every SQL statement), ``security`` (roles and tokens), ``services`` (what a
submission goes through, whoever submits), ``api`` (the JSON API) and ``admin`` (the
console), assembled by ``web`` into the Flask app; ``cli`` is the ``jobchain`` command.
The modules at this level are the engine: ``statuses``, ``payload`` and ``join_plan`` (the
rules of a chain), ``worker``, ``background``, ``housekeeping`` and ``scheduling`` (what
runs jobs and fires schedules), ``server`` and ``worker_process`` (the two kinds of
process). Importing this package loads no Flask, so a process that only runs jobs need not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.runtime import Runtime
    from config import Settings


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """``app.web.create_app``, kept here for ``gunicorn 'app:create_app()'`` (deploy/); Flask
    is imported when it is called, not when the package is."""
    from app.web import create_app as build

    return build(settings, runtime)
