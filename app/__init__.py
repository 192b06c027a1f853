"""jobchain: submit a tree of jobs; each starts when its parent ends.

The packages, from the bottom up (each package's docstring says what it may import):

- ``domain``: the pure rules (statuses and the transition table, what an outcome means,
  when a join decides, the payload and its join plan, cron). No SQL, no Flask.
- ``store``: every SQL statement, split along its seams (claims, completion, actions,
  recovery, release, joins, reads), the SQLite/PostgreSQL differences in ``dialect``.
- ``runner``: what runs in the background of a process (worker pool, housekeeping, the
  schedule loop, the ``jobchain worker`` process). Imports no Flask, waitress or requests.
- ``security`` (roles, tokens, signatures), ``services`` (the submit service), ``api``
  (the JSON API) and ``admin`` (the console), assembled by ``web`` into the Flask app;
  ``server`` is ``jobchain serve`` (the API plus a runner); ``cli`` is the command.

``failpoints`` (crash-test hooks) and ``runtime`` (what a process holds) sit beside them.
Importing this package loads no Flask, so a process that only runs jobs need not.
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
